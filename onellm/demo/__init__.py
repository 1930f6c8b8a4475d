"""``onellm demo``: a web demo (gradio) for every modality of a model (see docs/demo.md)."""
