"""Benchmark metrics (spec §5): captioning (pycocoevalcap), VQA soft accuracy, multiple choice, classification."""
from onellm.evaluation.metrics import (caption_metrics, classification_accuracy, exact_match, extract_option_letter,
                                       java_available, lenient_match, mean_metric, option_accuracy,
                                       simple_ptb_tokenize, spice_available, vqa_accuracy)
from onellm.evaluation.vqa_normalize import vqa_normalize

__all__ = [
    "caption_metrics", "classification_accuracy", "exact_match", "extract_option_letter", "java_available",
    "lenient_match", "mean_metric", "option_accuracy", "simple_ptb_tokenize", "spice_available", "vqa_accuracy",
    "vqa_normalize",
]
