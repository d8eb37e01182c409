"""PLACEHOLDER: replaced by the backbone implementation."""


def build_mobilenet(config):
    raise NotImplementedError("mobilenet is being written")
