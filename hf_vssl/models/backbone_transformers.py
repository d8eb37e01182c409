"""PLACEHOLDER"""


def build_swin_t(config):
    raise NotImplementedError


def build_mvit(config):
    raise NotImplementedError


def build_timesformer(config):
    raise NotImplementedError


def build_vivit(config):
    raise NotImplementedError
