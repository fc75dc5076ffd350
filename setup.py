"""Package list for the package-dir mapping in pyproject.toml.

kernels/, export/ and calib/ are top-level folders that install as asfyolo_rt.kernels,
asfyolo_rt.export and asfyolo_rt.calib; their subpackages are found here so that new ones need
no edit of pyproject.toml.
"""

from setuptools import find_packages, setup

packages = ["asfyolo_rt"] + [f"asfyolo_rt.{p}" for p in find_packages("asfyolo_rt")]
for folder in ("kernels", "export", "calib"):
    packages += [f"asfyolo_rt.{folder}"] + [f"asfyolo_rt.{folder}.{p}" for p in find_packages(folder)]

setup(packages=packages)
