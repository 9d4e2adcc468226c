"""cil.data: datasets through TFDS, imbalance protocols, episodic tasks."""

from cil.data.custom import Options
from cil.data.datasets import ArrayDataset
from cil.data.datasets import check_name
from cil.data.datasets import DATASET_NAMES
from cil.data.datasets import default_pipeline
from cil.data.datasets import load
from cil.data.datasets import stream
from cil.data.streaming import StreamedSplit
from cil.data import transforms
from cil.data.protocols import get_protocol
from cil.data.protocols import holdout
from cil.data.protocols import ImbalancedSplit
from cil.data.protocols import PROTOCOL_NAMES
from cil.data.protocols import subsample
from cil.data.protocols import TABLE1_PROTOCOLS
from cil.data.samplers import SAMPLERS
from cil.data.episodes import EpisodeSampler
from cil.data.episodes import imbalanced_distribution
from cil.data.episodes import partitions
from cil.data.episodes import random_oversample
from cil.data.episodes import Tasks
from cil.data.fewshot import FEWSHOT_NAMES
from cil.data.fewshot import FewShotSplits
from cil.data.fewshot import load_fewshot

__all__ = [
    'ArrayDataset',
    'check_name',
    'DATASET_NAMES',
    'default_pipeline',
    'EpisodeSampler',
    'FEWSHOT_NAMES',
    'FewShotSplits',
    'get_protocol',
    'holdout',
    'imbalanced_distribution',
    'ImbalancedSplit',
    'load',
    'load_fewshot',
    'Options',
    'partitions',
    'PROTOCOL_NAMES',
    'random_oversample',
    'SAMPLERS',
    'subsample',
    'TABLE1_PROTOCOLS',
    'stream',
    'StreamedSplit',
    'Tasks',
]
