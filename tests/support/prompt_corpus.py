"""A small corpus of prompts in four topics, for search tests with the real local model."""

from __future__ import annotations

from sqlalchemy.orm import Session

from db.database import Database
from db.repositories.prompts import PromptRepository
from db.transaction import write_transaction
from domain.prompts import Prompt

#: topic -> (title, content) of its prompts.
CORPUS: dict[str, list[tuple[str, str]]] = {
    "translation": [
        ("French translator", "Translate the following English text into French: {{ text }}"),
        ("Spanish localization", "Render this product description in natural Spanish."),
        ("Japanese translation", "Translate the user's message into polite Japanese."),
    ],
    "code": [
        ("Python bug fixer", "Find and fix the bug in this Python function: {{ code }}"),
        ("Code reviewer", "Review the pull request diff and point out errors and risks."),
        ("SQL writer", "Write an SQL query that returns the ten biggest customers by revenue."),
    ],
    "cooking": [
        ("Recipe ideas", "Suggest three dinner recipes using chicken, rice and spinach."),
        ("Baking helper", "Explain how to bake sourdough bread at home, step by step."),
        ("Meal planner", "Plan a week of healthy vegetarian lunches with a shopping list."),
    ],
    "support": [
        ("Refund reply", "Write a polite email telling a customer their refund was approved."),
        ("Complaint triage", "Classify the customer complaint by urgency and department."),
        ("Apology letter", "Draft an apology to a customer whose order arrived damaged."),
    ],
}

#: A query per topic that shares few words with its prompts.
QUERIES = {
    "translation": "convert my sentence to another language",
    "code": "source code and databases",
    "cooking": "what should I cook for supper",
    "support": "answering an unhappy client",
}


def add_corpus(db: Database, user_id: str = "corpus") -> dict[str, list[str]]:
    """Insert the corpus; returns topic -> prompt ids (in corpus order)."""

    def unit(session: Session) -> dict[str, list[str]]:
        prompts = PromptRepository(session)
        return {
            topic: [
                prompts.add(Prompt(title=title, content=content, user_id=user_id)).id
                for title, content in items
            ]
            for topic, items in CORPUS.items()
        }

    return write_transaction(db, unit)
