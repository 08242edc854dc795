"""Datamodules for the paper's datasets: language (tokenized once, memory-mapped) and vision."""

from hopfield_attention.data.errors import DataNotPreparedError, DatasetUnavailableError
from hopfield_attention.data.language import LanguageDataModule
from hopfield_attention.data.shakespeare import ShakespeareDataModule
from hopfield_attention.data.vision import VisionDataModule

__all__ = ["DataNotPreparedError", "DatasetUnavailableError", "LanguageDataModule", "ShakespeareDataModule", "VisionDataModule"]
