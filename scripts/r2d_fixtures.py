"""Makes the offline inputs of recipes/r2d.toml from their sources in
fixtures/r2d (run by scripts/r2d-fixtures):

- wheels/: one pure-Python wheel per project (app/ and deps/*/, each a
  pyproject.toml [project] table and its packages), with entry points;
  byte for byte reproducible (fixed zip times and modes);
- pylock.toml (the dependencies) and pylock.app.toml (the app), PEP 751
  locks naming those wheels by path and sha256;
- downloads/: terraform and tflint release zips per architecture, made from
  tools/<arch>/, laid out as their release URLs are;
- downloads/SHA256SUMS, the hashes recipes/r2d.toml pins.
"""

import base64
import hashlib
import os
import re
import sys
import tomllib
import zipfile

ROOT = sys.argv[1] if len(sys.argv) > 1 else "fixtures/r2d"
TIME = (1980, 1, 1, 0, 0, 0)
TOOLS = {
    # name: (version, path under downloads/ of the zip, as its release URL)
    "terraform": ("1.9.8", "terraform/{v}/terraform_{v}_linux_{arch}.zip"),
    "tflint": ("0.53.0", "tflint/v{v}/tflint_linux_{arch}.zip"),
}


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def add(z, name, data, mode):
    info = zipfile.ZipInfo(name, TIME)
    info.external_attr = (0o100000 | mode) << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    z.writestr(info, data)


def project_files(src):
    """(path in the wheel, bytes) of every package next to pyproject.toml."""
    out = []
    for top in sorted(os.listdir(src)):
        if not os.path.isfile(os.path.join(src, top, "__init__.py")):
            continue
        for d, dirs, files in os.walk(os.path.join(src, top)):
            dirs[:] = sorted(x for x in dirs if x != "__pycache__")
            for f in sorted(files):
                if f.endswith(".pyc"):
                    continue
                p = os.path.join(d, f)
                with open(p, "rb") as fh:
                    out.append((os.path.relpath(p, src), fh.read()))
    return sorted(out)


def wheel(src, outdir):
    with open(os.path.join(src, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    name, version = project["name"], project["version"]
    dist = re.sub(r"[-_.]+", "_", name).lower()
    info = f"{dist}-{version}.dist-info"
    files = project_files(src)
    tops = sorted({p.split("/")[0] for p, _ in files})
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: {project.get('description', '')}\n"
    if "requires-python" in project:
        meta += f"Requires-Python: {project['requires-python']}\n"
    for dep in project.get("dependencies", []):
        meta += f"Requires-Dist: {dep}\n"
    files.append((f"{info}/METADATA", meta.encode()))
    wheel_meta = "Wheel-Version: 1.0\nGenerator: scripts/r2d_fixtures.py\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    files.append((f"{info}/WHEEL", wheel_meta.encode()))
    scripts = project.get("scripts", {})
    if scripts:
        ep = "[console_scripts]\n" + "".join(f"{k} = {v}\n" for k, v in sorted(scripts.items()))
        files.append((f"{info}/entry_points.txt", ep.encode()))
    files.append((f"{info}/top_level.txt", "".join(t + "\n" for t in tops).encode()))
    record = ""
    for p, data in files:
        h = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record += f"{p},sha256={h},{len(data)}\n"
    record += f"{info}/RECORD,,\n"
    files.append((f"{info}/RECORD", record.encode()))
    path = os.path.join(outdir, f"{dist}-{version}-py3-none-any.whl")
    with zipfile.ZipFile(path, "w") as z:
        for p, data in files:
            add(z, p, data, 0o644)
    return name, version, os.path.basename(path)


def lock(path, wheels):
    text = 'lock-version = "1.0"\ncreated-by = "scripts/r2d_fixtures.py"\nrequires-python = ">=3.11"\n'
    for name, version, whl in wheels:
        with open(os.path.join(ROOT, "wheels", whl), "rb") as f:
            digest = sha256(f.read())
        text += (
            f'\n[[packages]]\nname = "{name}"\nversion = "{version}"\n'
            f'wheels = [{{ name = "{whl}", path = "wheels/{whl}", hashes = {{ sha256 = "{digest}" }} }}]\n'
        )
    with open(path, "w") as f:
        f.write(text)


def main():
    outdir = os.path.join(ROOT, "wheels")
    os.makedirs(outdir, exist_ok=True)
    for old in os.listdir(outdir):
        os.remove(os.path.join(outdir, old))
    deps = [wheel(os.path.join(ROOT, "deps", d), outdir) for d in sorted(os.listdir(os.path.join(ROOT, "deps")))]
    app = wheel(os.path.join(ROOT, "app"), outdir)
    lock(os.path.join(ROOT, "pylock.toml"), deps)
    lock(os.path.join(ROOT, "pylock.app.toml"), [app])

    sums = ""
    for tool, (version, pattern) in sorted(TOOLS.items()):
        for arch in ("amd64", "arm64"):
            rel = pattern.format(v=version, arch=arch)
            path = os.path.join(ROOT, "downloads", rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(os.path.join(ROOT, "tools", arch, tool), "rb") as f:
                binary = f.read()
            with zipfile.ZipFile(path, "w") as z:
                add(z, tool, binary, 0o755)
            with open(path, "rb") as f:
                sums += f"{sha256(f.read())}  {rel}\n"
    with open(os.path.join(ROOT, "downloads", "SHA256SUMS"), "w") as f:
        f.write(sums)


main()
