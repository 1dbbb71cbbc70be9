"""ripple's delivery tooling: container images built with podman, a local registry, the Helm
chart's image references, kn commands and the deploy and smoke steps of the pipeline.

config: settings, tag, ImageError; podman: the engine's configuration; bases: stand-in base
images from Debian packages; build: every function's and Flink's image; run: an image run as its
manifest runs it; registry: serve, push, save, references by digest; deploy: kn, helm, smoke.
`python -m ripple_delivery ...` is what the Makefile's image targets call.
"""
