"""What REPORT.md holds: its parts (one per notebook, with the guiding questions of each Discussion), the checklist,
the placeholder a Discussion starts with, and where its figures and its backup go."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PLACEHOLDER = "_Write your discussion here._"


FIGURES_DIR_SUFFIX = "_files"


BACKUP_SUFFIX = ".bak"  # REPORT.md.bak: the report as it was before the last rebuild


@dataclass(frozen=True)
class Part:
    key: str
    title: str
    runs: tuple[str, ...]  # run folder names, in order of appearance
    questions: tuple[str, ...]
    variants_table: bool = False  # the table of benchmarks/gan_variants.py (variants over seeds) follows its runs


# The guiding questions of each Discussion; each notebook's "Questions" cell lists its part's, word
# for word (tests/test_exercises.py checks it), so edit them here and there together.
PARTS = (
    Part(
        "ae",
        "Part 1: Autoencoder (notebook 01)",
        ("ae",),
        (
            "How does the AE's test MSE per pixel compare with PCA using as many components as the code has "
            "dimensions? Why can a nonlinear autoencoder beat PCA, and what could make it fail to? How does the "
            "gap change with `latent_dim=8` and `latent_dim=2`?",
            "Which digits are reconstructed worst, and what do the failures have in common?",
            "Is it the batch size or the number of optimiser steps that matters? Re-run with `batch_size=128, "
            "lr=1e-3` for the same number of epochs and compare the steps per epoch and the test MSE.",
            "Do your train and test curves show overfitting? What would you change (data, model, training) to "
            "provoke it, and what would you expect to see?",
            "Which digits overlap in the t-SNE picture of the codes, and what can and cannot be concluded from a "
            "t-SNE picture about the codes themselves?",
            "Why do decoded random codes not look like digits? What would have to be added to the training "
            "objective so that they do?",
        ),
    ),
    Part(
        "vae",
        "Part 2: Variational autoencoder (notebook 02)",
        ("vae", "vae-classic", "vae-narrow", "vae-latent2", "cvae", "vqvae"),
        (
            "How many nats per image go to reconstruction and how many to the KL on the test set? Read the KL as "
            "the information the code carries about an image: is that a lot or a little?",
            "How do the reconstruction and KL terms evolve during training, and why does the KL rise first and "
            "then settle? What would it mean if it stayed near zero for the whole run?",
            "Which VAE had the lower test -ELBO, the default or the classic one, and is the difference in "
            "reconstruction, in KL or both? Relate it to the parameters, the latent dimensions and the seconds "
            "per epoch.",
            "Compare the VAE's reconstructions and test MSE with the AE's, and its samples from the prior with the "
            "AE's decoded random codes. What does the KL term cost, and what does it buy?",
            "What does the decoded manifold of the 2-D model show about how the digits are arranged? Compare it "
            "with the scatter of the latent means.",
            "What changes when beta grows (beta-VAE): the KL, the reconstruction, the scatter and the manifold? "
            "Which beta would you choose for sampling new digits, and which for reconstructing them?",
            "How often does the conditional VAE draw the digit it is asked for, overall and per digit, and which "
            "digits does it confuse? What does the style-transfer row show that z keeps once the label carries "
            "the class?",
            "How does the VQ-VAE's test MSE compare with the AE's and the VAE's, and how many of its codes does "
            "it use (perplexity, usage)? What would you try if half of the codebook were never chosen?",
        ),
    ),
    Part(
        "gan",
        "Part 3: GANs (notebook 03)",
        ("dcgan", "gan", "cgan"),
        (
            "Describe the D(x) and D(G(z)) curves of your DCGAN run: who was winning when, and did training "
            "settle? Quote D(x), D(G(z)) and both losses at three epochs and relate them to 2 ln 2 and ln 2.",
            "In what order did G learn things (colour, edges, layout) in the fixed-noise progression? Did any "
            "column change completely late in training, and what does that say about the stability of G?",
            "Do you see signs of mode collapse in the fixed-noise grids or the diversity numbers? Give one way in "
            "which a GAN could score well on the diversity ratio and still be a poor generator.",
            "What did label smoothing, k = 2 generator steps and the slower discriminator each change in D(x), "
            "D(G(z)), the losses, the diversity and the cost, and why? Which would you keep for the DCGAN?",
            "If you trained on the synthetic stand-in, train on the real gallery: what differs in the curves and "
            "samples? If you trained on the gallery, compare the two discriminators on CIFAR-10 "
            '(`DCGANSettings(dataset="cifar10", downsample="maxpool")` against the strided one).',
            "Compare WGAN-GP and spectral normalisation with the plain GAN on the classifier Fréchet distance and "
            "the classes covered: what does each change in what D is allowed to be? Is the difference larger than "
            "the spread between seeds in the three-seed table of `benchmarks/gan_variants.py`?",
            "Compare the conditional GAN with the MNIST GAN on the conditional accuracy, the classifier Fréchet "
            "distance and the classes covered. Does being told the digit make G's job easier? Can a conditional "
            "G still collapse, and where would you look for it?",
        ),
        variants_table=True,
    ),
    Part(
        "compare",
        "Part 4: AE vs VAE vs GAN vs diffusion (notebook 04)",
        ("compare",),
        (
            "Which model would you choose for compression, for sampling, for sharp images, for cheap samples? "
            "Back it with the table.",
            "Is the Fréchet distance consistent with what you see in the samples? Where does it disagree?",
            "What does a diffusion sample cost against a GAN sample (network evaluations, seconds per 1,000 "
            "samples), and what does it buy in the Fréchet distance, the classes covered and the memorised fraction?",
            "What would you change to make the comparison fairer?",
        ),
    ),
    Part(
        "diffusion",
        "Part 5: Diffusion and flow matching (notebook 05)",
        ("diffusion", "diffusion-eps", "diffusion-cond"),
        (
            "How far is the classifier Fréchet distance of your `diffusion` run above the real-data floor (real "
            "training digits against the test digits: `real_fid_classifier` in Part 4), and how does it compare "
            "with the MNIST GAN's in Part 3? Do the classes covered and the samples tell the same story?",
            "Where does the quality-against-steps curve of notebook 05 flatten, and what does a sample cost there "
            "(`network_evaluations`, `sampling_seconds_per_1000`) against the GAN's single call of G? Which "
            "objective, flow matching with Heun (`diffusion`) or DDPM with DDIM (`diffusion-eps`), reaches a "
            "good Fréchet distance in fewer steps, and what about its sampler explains it?",
            "Samples are drawn from the exponential moving average of the weights. Train once more with "
            "`--ema 0 --out runs/diffusion-ema0` (samples from the last weights) and compare the Fréchet "
            "distance, the classes covered and the progression figures of the two runs: what did the average "
            "change, and would you expect the difference to grow or shrink with more epochs?",
            "What does classifier-free guidance trade? Read the conditional accuracy and the Fréchet distance of "
            "`diffusion-cond` (sampled with its `guidance` w) against the guidance sweep of notebook 05, compare "
            "its conditional accuracy with the conditional GAN's and the cVAE's, and say whether the rows of its "
            "digit grid still vary in style.",
            "Are the samples copies? Compare each run's `memorised_fraction` with the about 0.01 that held-out "
            "test digits score by construction, look at the closest pairs in notebook 05, and say what this "
            "pixel-space check could miss.",
        ),
    ),
)


# Instructor checklist: (part, run, kind, name, description); kind is "final" or "figure".
CHECKLIST = (
    ("ae", "ae", "final", "test_mse", "AE test MSE per pixel"),
    ("ae", "ae", "figure", "reconstructions", "AE reconstructions"),
    ("ae", "ae", "figure", "latent_tsne", "AE latent t-SNE"),
    ("ae", "ae", "figure", "random_codes", "AE decoded random codes"),
    ("vae", "vae", "final", "test_neg_elbo_nats", "VAE test -ELBO (nats)"),
    ("vae", "vae", "figure", "loss_curves", "VAE loss curves with the ELBO split"),
    ("vae", "vae", "figure", "prior_samples", "VAE samples from the prior"),
    ("vae", "vae", "figure", "interpolation", "VAE interpolation between two digits"),
    ("vae", "vae-latent2", "figure", "manifold", "decoded manifold of the latent-2 VAE"),
    ("vae", "cvae", "final", "conditional_accuracy", "cVAE conditional accuracy"),
    ("vae", "cvae", "figure", "digit_grid", "cVAE samples, one row per digit"),
    ("vae", "vqvae", "final", "codebook_perplexity", "VQ-VAE codebook perplexity"),
    ("gan", "dcgan", "figure", "progression", "DCGAN fixed-noise progression"),
    ("gan", "dcgan", "final", "seconds_per_epoch", "DCGAN seconds per epoch"),
    ("gan", "gan", "figure", "progression", "MNIST GAN fixed-noise progression"),
    ("gan", "cgan", "final", "conditional_accuracy", "conditional GAN conditional accuracy"),
    ("gan", "cgan", "figure", "digit_grid", "conditional GAN samples, one row per digit"),
    ("compare", "compare", "final", "table", "measured comparison table"),
    ("diffusion", "diffusion", "final", "fid_classifier", "flow matching classifier Fréchet distance"),
    ("diffusion", "diffusion", "final", "memorised_fraction", "flow matching memorised fraction"),
    ("diffusion", "diffusion", "final", "sampling_seconds_per_1000", "flow matching seconds per 1,000 samples"),
    ("diffusion", "diffusion", "figure", "samples", "flow matching samples"),
    ("diffusion", "diffusion", "figure", "progression", "flow matching fixed-noise progression"),
    ("diffusion", "diffusion", "figure", "trajectory", "flow matching path from noise to digit"),
    ("diffusion", "diffusion-eps", "final", "fid_classifier", "DDPM classifier Fréchet distance"),
    ("diffusion", "diffusion-cond", "final", "conditional_accuracy", "conditional diffusion conditional accuracy"),
    ("diffusion", "diffusion-cond", "figure", "digit_grid", "conditional diffusion samples, one row per digit"),
)


def figures_folder(report_path: Path) -> Path:
    """Where the figures of the report at ``report_path`` go: ``REPORT_files/`` beside ``REPORT.md``."""
    return report_path.parent / (report_path.stem + FIGURES_DIR_SUFFIX)


def backup_path(report_path: Path) -> Path:
    """Where a rebuild keeps the report it replaces: ``REPORT.md.bak`` beside ``REPORT.md``."""
    return report_path.with_name(report_path.name + BACKUP_SUFFIX)
