"""Built-in learners: each turns a task's noisy labels (and images) into posteriors."""

from benchmark.learners.resnet50 import ResNet50
from benchmark.learners.smallcnn import SmallCNN
from benchmark.learners.truth import TruthLearner

BUILTIN_LEARNERS = [TruthLearner, SmallCNN, ResNet50]
