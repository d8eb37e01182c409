"""PLACEHOLDER"""


def build_r3d(config):
    raise NotImplementedError


def build_r21d(config):
    raise NotImplementedError


def build_r3d_18(config):
    raise NotImplementedError


def build_r21d_18(config):
    raise NotImplementedError
