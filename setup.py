"""Packaging beyond what pyproject.toml can say: the top-level migrations/ folder ships inside the package as
``invitelink.migrations``, so an installed invitelink migrates from any folder. (setuptools cannot combine package
discovery with a second source folder in pyproject.toml alone.) Everything else is in pyproject.toml."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages("src"), "invitelink.migrations", "invitelink.migrations.versions"],
    package_dir={"": "src", "invitelink.migrations": "migrations"},
)
