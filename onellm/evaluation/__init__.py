"""Benchmark metrics (spec §5): captioning (pycocoevalcap), VQA soft accuracy, multiple choice, classification; the
scene-label rule (``scene``) and the leaderboard submission files (``submission``)."""
from onellm.evaluation.metrics import (caption_metrics, classification_accuracy, exact_match, extract_option_letter,
                                       java_available, lenient_match, mean_metric, option_accuracy,
                                       simple_ptb_tokenize, spice_available, vqa_accuracy)
from onellm.evaluation.scene import NYUV2, SUNRGBD, SceneLabels
from onellm.evaluation.submission import SubmissionFile, mmvet_results, nocaps_results, vqav2_results
from onellm.evaluation.vqa_normalize import vqa_normalize

__all__ = [
    "caption_metrics", "classification_accuracy", "exact_match", "extract_option_letter", "java_available",
    "lenient_match", "mean_metric", "option_accuracy", "simple_ptb_tokenize", "spice_available", "vqa_accuracy",
    "vqa_normalize", "SceneLabels", "NYUV2", "SUNRGBD", "SubmissionFile", "mmvet_results", "nocaps_results",
    "vqav2_results",
]
