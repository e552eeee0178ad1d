#!/usr/bin/env python3
"""Parses every test, example and benchmark translation unit of a GCC build again with clang++.

    clang_syntax.py <compile_commands.json> <clang++> <source dir> [jobs]

Each compile command of a file under tests/, examples/ or benchmarks/ of the source dir is rerun with
clang++ in place of the compiler and -fsyntax-only in place of the output, with the same defines,
include paths and warning flags (-Werror included). GCC accepts some ill-formed code that clang and
nvcc's front end refuse (seen here: one `auto` declaration whose declarators deduce different types);
the CI build is GCC's, so this is where such code is caught before a user's clang or CUDA build.
Every header is reached through the tests that include it; tests/compile_fail/, which must not
compile, is left out. Exits 1 and prints clang's messages, file by file, when any unit fails.
"""
import json
import os
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor


def clang_command(entry, clang):
    args = entry["arguments"] if "arguments" in entry else shlex.split(entry["command"])
    out = [clang, "-fsyntax-only"]
    skip = False
    for a in args[1:]:
        if skip:
            skip = False
            continue
        if a in ("-o", "-MT", "-MF", "-MQ"):
            skip = True
            continue
        if a in ("-c", "-MD", "-MMD"):
            continue
        out.append(a)
    # CMake leaves -std out where GCC's default already is C++17 (GCC 12: gnu++17); clang 14's is C++14.
    if not any(a.startswith("-std=") for a in out):
        out.insert(2, "-std=c++17")
    return out


def main():
    if len(sys.argv) < 4:
        sys.exit("usage: clang_syntax.py <compile_commands.json> <clang++> <source dir> [jobs]")
    db_path, clang, source = sys.argv[1], sys.argv[2], os.path.realpath(sys.argv[3])
    jobs = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    try:
        with open(db_path) as f:
            db = json.load(f)
    except (OSError, ValueError) as e:
        sys.exit(f"clang_syntax: cannot read {db_path}: {e} (configure with CMAKE_EXPORT_COMPILE_COMMANDS=ON)")
    roots = tuple(os.path.join(source, d) + os.sep for d in ("tests", "examples", "benchmarks"))
    units = {}
    for entry in db:
        path = os.path.realpath(os.path.join(entry["directory"], entry["file"]))
        if path.startswith(roots) and path.endswith(".cpp") and os.sep + "compile_fail" + os.sep not in path:
            units[path] = entry  # a file built twice (two targets) is parsed once
    if not units:
        sys.exit(f"clang_syntax: no test, example or benchmark sources in {db_path}")

    def check(item):
        path, entry = item
        r = subprocess.run(clang_command(entry, clang), cwd=entry["directory"], capture_output=True, text=True)
        return path, r.returncode, r.stdout + r.stderr

    failed = 0
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for path, code, text in pool.map(check, sorted(units.items())):
            rel = os.path.relpath(path, source)
            if code != 0:
                failed += 1
                print(f"== {rel}: clang++ refuses it\n{text}", flush=True)
            elif text.strip():
                print(f"== {rel}: clang++ accepts it, saying\n{text}", flush=True)
    print(f"clang_syntax: {len(units) - failed} of {len(units)} translation units pass {clang} -fsyntax-only")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
