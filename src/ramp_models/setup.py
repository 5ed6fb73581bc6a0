"""ament_python package definition for ramp_models."""

from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "ramp_models"
DESCRIPTION = (
    (Path(__file__).parent / "package.xml")
    .read_text()
    .split("<description>")[1]
    .split("</description>")[0]
)

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + PACKAGE]),
        ("share/" + PACKAGE, ["package.xml"]),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="RAMP maintainers",
    maintainer_email="ramp-maintainers@example.org",
    description=DESCRIPTION,
    license="Apache-2.0",
)
