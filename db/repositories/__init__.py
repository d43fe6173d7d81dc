"""Repositories: one per aggregate. They take a session and never commit."""

from db.repositories.evaluations import EvaluationRepository
from db.repositories.jobs import JobRepository
from db.repositories.prompts import PromptRepository

__all__ = ["EvaluationRepository", "JobRepository", "PromptRepository"]
