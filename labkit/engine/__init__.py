"""The engine under the models: what every notebook and command uses and a student need not read
to learn the models (``labkit.engine.loop`` excepted: it is the one training loop of the course).

    loop         ``fit`` and ``evaluate``: the training loop of the course, on one screen, and ``Harness``, what
                 wraps it: checks before training, resume, several GPUs, the NaN watch, progress bars
    training     what a training is: the protocol ``fit`` drives, ``TrainingBase``, ``History``, and the
                 precision its steps run in (float32, bfloat16 or float16 with its gradient scaler)
    optim        Adam, fused where the device has a fused kernel, and the count of what it trains
    checkpoint   saving every epoch, resuming, refusing checkpoints that need code to load
    distributed  several processes under ``torchrun`` (DistributedDataParallel)
    environment  where labkit runs: picking the GPU (and saying why not), Colab and Kaggle, smoke mode, the
                 data and runs folders, seeding every generator
    runs         a run's folder: settings, per-epoch history, figures and ``metrics.json``
    settings     the checks every setting runs on its value
    files        writing files whole or not at all
    tensorboard  ``--tensorboard``: every epoch's numbers and a picture of progress, for TensorBoard
    family       what a model family declares for the rest of labkit: its recipes with their settings and
                 command-line options, the doctor's checks, what ``grade`` measures again
                 (``labkit.experiments.FAMILIES`` lists the families)

Imports go one way: ``environment``, ``settings``, ``files``, ``optim``, ``distributed``, ``tensorboard`` and
``family`` import no other part of labkit; ``training`` and ``checkpoint`` build on them, ``loop`` on those, ``runs`` on
``loop``.
"""
