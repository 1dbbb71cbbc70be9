"""Knative Serving's data and control plane for one function, locally: activator, KPA, instances.

See README.md next to this file: the Knative piece -> local module table and every deviation.
"""
