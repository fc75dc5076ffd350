"""Training: config, augmentation, dataset, target assignment, loss, AutoAnchor, EMA and the loop."""

from asfyolo_rt.train.config import AugmentConfig, LossConfig, OptimConfig, TrainConfig

__all__ = ["AugmentConfig", "LossConfig", "OptimConfig", "TrainConfig", "train"]


def __getattr__(name: str):  # lazy: importing the config must not import the whole loop
    if name == "train":
        from asfyolo_rt.train.trainer import train

        return train
    raise AttributeError(name)
