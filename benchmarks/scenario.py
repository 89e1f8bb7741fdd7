"""The services every library builds in S1 and S2."""

from __future__ import annotations


class Config:
    def __init__(self) -> None:
        self.url = "sqlite://"


class Database:
    def __init__(self, config: Config) -> None:
        self.config = config


class Repo:
    def __init__(self, db: Database) -> None:
        self.db = db


class Service:
    def __init__(self, repo: Repo, config: Config) -> None:
        self.repo = repo
        self.config = config
