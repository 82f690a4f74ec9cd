"""layout save FILE | layout load FILE | layout list

VMCS layout maps as files: `save` writes the map hv.sys discovered on the
target (its debug descriptor); `load` checks a file and installs it, so that
regions of other drivers on the same processor model decode (vmcs N with
--symbols, scan); `list` shows what is installed and shipped.
"""
from __future__ import annotations

import os

from windbg_ext.commands.base import CommandError
from windbg_ext.hv import layouts
from windbg_ext.hv.walker import walker_for
from windbg_ext.render.report import Report

SUMMARY = "save hv.sys's VMCS layout map to a file, install one (load), or list them"
NEEDS_TARGET = False


def add_arguments(p) -> None:
    p.add_argument("action", choices=("save", "load", "list"))
    p.add_argument("file", nargs="?", help="the layout file (save: written, load: read)")


def run(ctx, args) -> Report:
    if args.action == "list":
        rows = [[path, "0x%x" % rev, source] for path, rev, source in layouts.available()]
        r = Report(data={"layouts": [{"path": p, "revision_id": rv, "source": s} for p, rv, s in rows]})
        r.table(["file", "revision id", "source"], rows)
        r.text("installed layouts go to %s ($HVLAB_LAYOUTS)" % layouts.user_dir())
        return r
    if not args.file:
        raise CommandError("layout %s needs a FILE (e.g. layout %s my-cpu.json)" % (args.action, args.action))
    if args.action == "load":
        rev, entries, source = layouts.read_file(args.file)
        dest = layouts.install(args.file)
        r = Report(data={"installed": dest, "revision_id": "0x%x" % rev, "fields": len(entries)})
        r.text("installed %s: %d fields for VMCS revision id 0x%x (%s)" % (dest, len(entries), rev, source or "?"))
        return r
    # save: from hv.sys's descriptor on the target
    d = walker_for(ctx).descriptor()
    found = [e for e in d.layout if e.found]
    if d.layout_status != "discovered" or not found:
        raise CommandError("hv.sys on this target has no discovered VMCS layout map (status: %s): load hv.sys on "
                           "that processor model first" % d.layout_status)
    where = os.path.dirname(os.path.abspath(args.file))
    if not os.path.isdir(where):
        raise CommandError("cannot write %s: directory %s does not exist" % (args.file, where))
    doc = layouts.to_document(d.layout, d.LayoutRevisionId, "hv.sys layout discovery on %s" % ctx.target.describe())
    tmp = args.file + ".tmp%d" % os.getpid()
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(layouts.dumps(doc))
        os.replace(tmp, args.file)
    except OSError as e:
        raise CommandError("cannot write %s: %s" % (args.file, e.strerror or e))
    r = Report(data={"written": args.file, "revision_id": "0x%x" % d.LayoutRevisionId, "fields": len(found)})
    r.text("wrote %s: %d fields for VMCS revision id 0x%x" % (args.file, len(found), d.LayoutRevisionId))
    return r
