"""Ship the top-level grammar/ and stdlib/ inside the wheel.

The grammar and the standard library live at the top of the repository (one grammar file,
one stdlib folder); at build time they are copied into the package as ppl/_grammar and
ppl/_stdlib so that an installed copy finds them without a checkout.
"""
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).parent


class BuildWithResources(build_py):
    def run(self):
        super().run()
        for src, dst in (("grammar", "_grammar"), ("stdlib", "_stdlib")):
            target = Path(self.build_lib) / "ppl" / dst
            target.mkdir(parents=True, exist_ok=True)
            for f in (ROOT / src).iterdir():
                if f.suffix in (".lark", ".ppl"):
                    shutil.copy2(f, target / f.name)


setup(cmdclass={"build_py": BuildWithResources})
