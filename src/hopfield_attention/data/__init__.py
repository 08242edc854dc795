"""Datamodules for the paper's datasets: language (tokenized once, memory-mapped) and vision."""

from .errors import DataNotPreparedError, DatasetUnavailableError
from .language import LanguageDataModule
from .shakespeare import ShakespeareDataModule
from .vision import VisionDataModule

__all__ = ["DataNotPreparedError", "DatasetUnavailableError", "LanguageDataModule", "ShakespeareDataModule", "VisionDataModule"]
