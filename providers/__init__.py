"""Clients of models outside the job engine (embedders), shared by the kinds that use them.

A job kind may not import another kind; what two kinds both need (the evaluation's
``similarity`` scorer and the embedding kind both embed text) lives here.
"""
