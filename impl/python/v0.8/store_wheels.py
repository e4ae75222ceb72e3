"""Write every wheel in a folder again with its entries stored, not deflated (impl/python/v0.8/Makefile).

The same entries in the same order, with the same names, dates and modes: the same RECORD and
the same installed files. A wheel already stored is left alone, so this can run again.
"""

import pathlib
import sys
import zipfile


def store(wheel: pathlib.Path) -> bool:
    with zipfile.ZipFile(wheel) as source:
        if all(info.compress_type == zipfile.ZIP_STORED for info in source.infolist()):
            return False
        stored = wheel.with_name(wheel.name + ".tmp")
        with zipfile.ZipFile(stored, "w", zipfile.ZIP_STORED) as target:
            for info in source.infolist():
                target.writestr(info, source.read(info), compress_type=zipfile.ZIP_STORED)
    stored.replace(wheel)
    return True


if __name__ == "__main__":
    wheels = sorted(pathlib.Path(sys.argv[1]).glob("*.whl"))
    print(f"vendor: {sum(store(wheel) for wheel in wheels)} of {len(wheels)} wheels written stored")
