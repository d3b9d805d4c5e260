"""watchnext: a TFX + Keras 3 recommender pipeline.

The top-level folders (components/, models/, pipeline/, schemas/, serving/)
install as sub-packages of one `watchnext` package, so no generic names such
as `models` or `pipeline` land in site-packages.
"""

from pathlib import Path

from setuptools import setup

HERE = Path(__file__).parent
SUBPACKAGES = ["components", "models", "pipeline", "schemas", "serving"]


def read_requirements(name: str) -> list[str]:
    lines = (HERE / "env" / name).read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def find_subpackages() -> list[str]:
    found = ["watchnext"]
    for top in SUBPACKAGES:
        for init in sorted((HERE / top).rglob("__init__.py")):
            parts = init.parent.relative_to(HERE).parts
            found.append(".".join(("watchnext",) + parts))
    return found


setup(
    name="watchnext",
    version="0.1.0",
    description="TFX + Keras 3 recommender pipeline: features, MMoE/POSO ranker, HSTU, TFMA, serving",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10,<3.14",
    package_dir={"watchnext": "."},
    packages=find_subpackages(),
    package_data={"watchnext.schemas": ["*/*.pbtxt"]},
    install_requires=read_requirements("requirements.txt"),
    extras_require={"test": read_requirements("requirements-test.txt")},
    entry_points={"console_scripts": ["watchnext = watchnext.pipeline.cli:main"]},
)
