"""Packaging glue pyproject.toml cannot express: systemd/, policies/, man/ as package data.

The checkout keeps them at the top level (where admins and tests look); the wheel carries
them as portguard/shipped/<dir>, so `pip install portguard-*.whl` gives the whole tool.
"""

from setuptools import find_packages, setup

SHIPPED = {
    "portguard.shipped.systemd": "systemd",
    "portguard.shipped.policies": "policies",
    "portguard.shipped.man": "man",
}

setup(
    packages=[*find_packages(include=["portguard", "portguard.*"]), *SHIPPED],
    package_dir=SHIPPED,
    package_data={"portguard": ["py.typed"], **{name: ["*"] for name in SHIPPED}},
)
