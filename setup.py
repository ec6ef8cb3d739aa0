"""The one part of the build pyproject.toml cannot declare: the top-level spaces/, predictors/,
recipes/ and data/ folders go into the wheel as package data under jointnas/_shipped/<kind>/
(read by jointnas.shipped). Each folder's top-level files ship; subfolders (data/cache/) do not."""
from pathlib import Path

from setuptools import find_packages, setup

SHIPPED = ("spaces", "predictors", "recipes", "data")  # jointnas.shipped.KINDS
here = Path(__file__).resolve().parent
kinds = [k for k in SHIPPED if (here / k).is_dir()]
setup(packages=find_packages(include=["jointnas", "jointnas.*"]) + [f"jointnas._shipped.{k}" for k in kinds],
      package_dir={f"jointnas._shipped.{k}": k for k in kinds},
      package_data={"jointnas": ["py.typed"], **{f"jointnas._shipped.{k}": ["*"] for k in kinds}})
