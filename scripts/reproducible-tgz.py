"""A gzipped tar archive made reproducible, or checked to be (scripts/release.sh).

    reproducible-tgz.py ARCHIVE EPOCH           rewrite ARCHIVE in place
    reproducible-tgz.py --check ARCHIVE EPOCH   exit 1 unless ARCHIVE is already so

`helm package` stamps the time of packaging into every entry and into the gzip header, so two
packagings of one commit differ. Rewritten: entries in name order, each dated EPOCH (the commit's
time), owned by 0:0 with no user or group names, and a gzip header with no time and no name.
The contents and modes are kept.
"""
import gzip
import io
import sys
import tarfile


def copy_info(info, epoch):
    new = tarfile.TarInfo(info.name)
    new.size, new.mode, new.type, new.linkname = info.size, info.mode, info.type, info.linkname
    new.mtime, new.uid, new.gid, new.uname, new.gname = epoch, 0, 0, "", ""
    return new


def rewrite(path, epoch):
    with tarfile.open(path, "r:gz") as source:
        members = sorted(source.getmembers(), key=lambda m: m.name)
        entries = [(copy_info(m, epoch), source.extractfile(m).read() if m.isfile() else None) for m in members]
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as target:
        for info, data in entries:
            target.addfile(info, io.BytesIO(data) if data is not None else None)
    with open(path, "wb") as f, gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0) as z:
        z.write(raw.getvalue())


def problems(path, epoch):
    with open(path, "rb") as f:
        header = f.read(10)
    found = []
    if header[4:8] != b"\0\0\0\0":
        found.append("the gzip header carries a time")
    if header[3] & 0x08:
        found.append("the gzip header carries a file name")
    with tarfile.open(path, "r:gz") as archive:
        names = archive.getnames()
        if names != sorted(names):
            found.append("entries are not in name order")
        for m in archive.getmembers():
            if (m.mtime, m.uid, m.gid, m.uname, m.gname) != (epoch, 0, 0, "", ""):
                found.append(f"{m.name}: mtime {m.mtime}, owner {m.uid}:{m.gid} ({m.uname}:{m.gname})")
    return found


def main(argv):
    check = argv[:1] == ["--check"]
    path, epoch = argv[1:] if check else argv
    epoch = int(epoch)
    if not check:
        rewrite(path, epoch)
    found = problems(path, epoch)
    for line in found:
        print(f"{path}: {line}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
