"""``onellm demo``: a web demo (gradio) for every modality of a model; see docs/demo.md.

* :mod:`.backend` -- the model side (no gradio): load, encode each upload once, prompts, batched streaming, stop;
* :mod:`.batcher` -- the request batcher thread;
* :mod:`.app` -- the gradio Blocks and their handlers; :mod:`.widgets` -- one widget kind per registry ``demo_kind``;
* :mod:`.previews` -- pictures of point clouds, IMU windows and fMRI voxels; :mod:`.examples` -- from the synthetic
  world;
* :mod:`.browser` / :mod:`.screenshot` -- headless-Chromium driver (tests) and the README screenshot.

Only :mod:`.backend`, :mod:`.batcher`, :mod:`.previews` and :mod:`.examples` import without gradio.
"""
