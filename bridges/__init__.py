"""Transformer side of neurobridge: token mixers (softmax, linear, GLA, delta rule), Hebbian
associative memory, Pavlovian capacity theory, small sequence models; the exact bridges.
"""
