"""The engine under the models: what every notebook and command uses and a student need not read
to learn the models (``labkit.engine.loop`` excepted: it is the one training loop of the course).

    loop         ``fit`` and ``evaluate``: the training loop of the course, on one screen
    harness      what wraps the loop: checks before training, resume, several GPUs, the NaN watch
    precision    float32, bfloat16 or float16 (with its gradient scaler) on each device
    optim        Adam, fused where the device has a fused kernel
    checkpoint   saving every epoch, resuming, refusing checkpoints that need code to load
    distributed  several processes under ``torchrun`` (DistributedDataParallel)
    device       picking the GPU (and saying why not), seeding every generator
    runs         a run's folder: settings, per-epoch history, figures and ``metrics.json``
    settings     smoke mode, the data and runs folders, checking settings
    tensorboard  ``--tensorboard``: every epoch's numbers and a picture of progress, for TensorBoard
"""
