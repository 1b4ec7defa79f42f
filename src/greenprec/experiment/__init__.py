"""The experiment protocol behind ``greenprec compare``: config, schedule, runner, results."""

from greenprec.experiment.config import ExperimentConfig, load_config
from greenprec.experiment.runner import run_experiment
from greenprec.results import ResultsStore

__all__ = ["ExperimentConfig", "ResultsStore", "load_config", "run_experiment"]
