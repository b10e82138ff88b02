"""Packaging for Scrapyd: `scrapyd-deploy` builds an egg from this file."""

from setuptools import find_packages, setup

setup(
    name="tracking287g",
    version="1.0",
    packages=find_packages(exclude=["tests", "tests.*", "bench", "bench.*"]),
    entry_points={"scrapy": ["settings = tracking287g.settings"]},
    # The project has no data files today; anything added under tracking287g/ that is not
    # Python goes in the egg too.
    include_package_data=True,
    zip_safe=False,
)
