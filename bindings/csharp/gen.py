#!/usr/bin/env python3
"""Generates the C# P/Invoke layer (Voice.Native.g.cs) from include/voice.h.

The header is written by cbindgen and very regular: `//` comment blocks, `#define NAME VALUE`,
one `enum voice_result`, opaque `typedef struct X X;` handles, `typedef struct X { ... } X;`
structures, one function-pointer typedef per callback, and prototypes inside `extern "C"`. This
script parses exactly that shape (stdlib only) and fails loudly on anything it does not know, so
a header change that needs a new mapping is noticed instead of mistranslated.

  gen.py [--header include/voice.h] [--out bindings/csharp/Voice.Native.g.cs]
         [--layout DIR]   also writes DIR/layout.c (sizeof/offsetof/constant values from the C
                          compiler) and DIR/Layout.g.cs (the same table from Marshal.SizeOf /
                          Marshal.OffsetOf / the generated constants), for bindings/csharp/test.sh
         [--check]        compare with the existing --out file instead of writing it (exit 1 if
                          it differs)

Mapping (see README.md):
  uint32_t/int32_t/uint64_t/... -> uint/int/ulong/...; size_t -> UIntPtr; float/double as is;
  bool field -> private byte `_name` + bool property `name` (1 byte, keeps the struct blittable);
  bool parameter -> [MarshalAs(UnmanagedType.U1)] bool;
  const char * field -> IntPtr (Native.Utf8Alloc / Native.Utf8Read);
  scalar array field -> `fixed` buffer; struct array field -> unrolled fields name_0..name_N-1
  plus an accessor `name(i)`; either with a constant `name_capacity` = N; function-pointer field or parameter -> IntPtr;
  opaque handle pointer -> IntPtr; `T **out` -> out IntPtr; struct pointer -> ref T;
  scalar pointer followed by a size_t parameter -> T[] (char/uint8_t -> byte[]);
  const char * parameter alone -> byte[] (NUL-terminated UTF-8: Native.Utf8z);
  other non-const scalar pointer -> out T; any other pointer -> IntPtr.
"""

import argparse
import os
import re
import sys

SCALARS = {
    "uint8_t": "byte",
    "int8_t": "sbyte",
    "char": "byte",
    "uint16_t": "ushort",
    "int16_t": "short",
    "uint32_t": "uint",
    "int32_t": "int",
    "uint64_t": "ulong",
    "int64_t": "long",
    "size_t": "UIntPtr",
    "uintptr_t": "UIntPtr",
    "intptr_t": "IntPtr",
    "float": "float",
    "double": "double",
    "bool": "bool",
}
# Types a C# `fixed` buffer may hold.
FIXED_OK = {"byte", "sbyte", "ushort", "short", "uint", "int", "ulong", "long", "float", "double"}

CS_KEYWORDS = {
    "abstract", "as", "base", "bool", "break", "byte", "case", "catch", "char", "checked", "class",
    "const", "continue", "decimal", "default", "delegate", "do", "double", "else", "enum", "event",
    "explicit", "extern", "false", "finally", "fixed", "float", "for", "foreach", "goto", "if",
    "implicit", "in", "int", "interface", "internal", "is", "lock", "long", "namespace", "new",
    "null", "object", "operator", "out", "override", "params", "private", "protected", "public",
    "readonly", "ref", "return", "sbyte", "sealed", "short", "sizeof", "stackalloc", "static",
    "string", "struct", "switch", "this", "throw", "true", "try", "typeof", "uint", "ulong",
    "unchecked", "unsafe", "ushort", "using", "virtual", "void", "volatile", "while",
}


def ident(name):
    return "@" + name if name in CS_KEYWORDS else name


class ParseError(Exception):
    pass


class Header:
    def __init__(self):
        self.defines = []  # (name, value text, doc)
        self.enums = []  # (name, [(member, value, doc)], doc)
        self.opaque = []  # (name, doc)
        self.structs = []  # (name, [field dict], doc)
        self.callbacks = []  # (name, return type, [(type, name)], doc)
        self.functions = []  # (name, return type, [(type, name)], doc)
        self.aliases = {}  # typedef name -> scalar C type

    def struct_names(self):
        return {s[0] for s in self.structs}

    def opaque_names(self):
        return {o[0] for o in self.opaque}

    def callback_names(self):
        return {c[0] for c in self.callbacks}

    def enum_names(self):
        return {e[0] for e in self.enums}

    def define_value(self, name):
        for n, v, _ in self.defines:
            if n == name:
                return int(v, 0)
        raise ParseError("array size %s is not a #define" % name)


def split_type_name(decl):
    """'const struct voice_event *event' -> ('const struct voice_event *', 'event')."""
    decl = " ".join(decl.split())
    m = re.match(r"^(.*?)([A-Za-z_][A-Za-z0-9_]*)$", decl)
    if not m:
        raise ParseError("cannot split declaration %r" % decl)
    return m.group(1).strip(), m.group(2)


def parse_params(text):
    text = " ".join(text.split())
    if text in ("void", ""):
        return []
    return [split_type_name(p.strip()) for p in text.split(",")]


def parse(path):
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    h = Header()
    doc = []
    i = 0
    in_extern = False
    n = len(lines)
    while i < n:
        raw = lines[i]
        line = raw.strip()
        i += 1
        if line.startswith("//"):
            doc.append(line[2:][1:] if line[2:].startswith(" ") else line[2:])
            continue
        if line.startswith("/*"):
            while "*/" not in lines[i - 1]:
                i += 1
            doc = []
            continue
        if not line:
            doc = []
            continue
        if line.startswith("#define"):
            parts = line.split(None, 2)
            if len(parts) == 3 and parts[1] != "VOICE_H":
                h.defines.append((parts[1], parts[2], doc))
            doc = []
            continue
        if line.startswith("#"):
            continue
        if line.startswith('extern "C"') or line.startswith("}  // extern"):
            in_extern = line.startswith("extern")
            continue
        if line.startswith("enum "):
            name = line.split()[1]
            members = []
            mdoc = []
            while not lines[i].strip().startswith("{"):
                i += 1
            i += 1
            while not lines[i].strip().startswith("}"):
                m = lines[i].strip()
                i += 1
                if m.startswith("//"):
                    mdoc.append(m[3:] if m.startswith("// ") else m[2:])
                    continue
                mm = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)\s*=\s*([^,]+),?$", m)
                if not mm:
                    raise ParseError("enum member %r" % m)
                members.append((mm.group(1), mm.group(2).strip(), mdoc))
                mdoc = []
            i += 1
            h.enums.append((name, members, doc))
            doc = []
            continue
        m = re.match(r"^typedef struct (\w+) (\w+);$", line)
        if m:
            h.opaque.append((m.group(1), doc))
            doc = []
            continue
        m = re.match(r"^typedef struct (\w+) \{$", line)
        if m:
            name = m.group(1)
            fields = []
            fdoc = []
            while not lines[i].strip().startswith("}"):
                fl = lines[i].strip()
                i += 1
                if fl.startswith("//"):
                    fdoc.append(fl[3:] if fl.startswith("// ") else fl[2:])
                    continue
                fm = re.match(r"^(.*?)(\w+)(\[(\w+)\])?;$", fl)
                if not fm:
                    raise ParseError("struct %s field %r" % (name, fl))
                fields.append({
                    "ctype": " ".join(fm.group(1).split()),
                    "name": fm.group(2),
                    "count": fm.group(4),
                    "doc": fdoc,
                })
                fdoc = []
            i += 1
            h.structs.append((name, fields, doc))
            doc = []
            continue
        m = re.match(r"^typedef (.+?)\(\*(\w+)\)\((.*)\);$", line)
        if m:
            h.callbacks.append((m.group(2), m.group(1).strip(), parse_params(m.group(3)), doc))
            doc = []
            continue
        m = re.match(r"^typedef (?:const )?(\w+) (\w+);$", line)
        if m and m.group(1) in SCALARS and m.group(2) not in h.aliases and m.group(2) not in h.enum_names():
            # A scalar alias (`typedef uint32_t voice_x;`); not cbindgen's C11 spelling of an enum.
            h.aliases[m.group(2)] = m.group(1)
            doc = []
            continue
        if line.startswith("typedef ") or line == "{" or line.startswith("}") or line.startswith(": "):
            # The C23/C++ enum typedefs and the enum's underlying-type lines.
            doc = []
            continue
        if in_extern:
            decl = line
            while not decl.endswith(";"):
                decl += " " + lines[i].strip()
                i += 1
            fm = re.match(r"^(.*?)\b(\w+)\((.*)\);$", decl)
            if not fm:
                raise ParseError("prototype %r" % decl)
            h.functions.append((fm.group(2), " ".join(fm.group(1).split()), parse_params(fm.group(3)), doc))
            doc = []
            continue
        raise ParseError("line %d not understood: %r" % (i, raw))
    return h


def xml(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def doc_lines(doc, indent):
    if not doc:
        return []
    out = [indent + "/// <summary>"]
    out += [(indent + "/// " + xml(d)).rstrip() for d in doc]
    out.append(indent + "/// </summary>")
    return out


def base_type(ctype):
    """'const struct voice_event *' -> ('voice_event', pointer depth, is_const)."""
    t = ctype.replace("*", " * ")
    toks = t.split()
    const = "const" in toks
    depth = toks.count("*")
    rest = [x for x in toks if x not in ("const", "struct", "enum", "*")]
    if len(rest) != 1:
        raise ParseError("type %r" % ctype)
    return rest[0], depth, const


def literal(value):
    v = value.strip()
    if re.match(r"^-?(0x[0-9A-Fa-f]+|\d+)[uUlL]*$", v):
        num = int(v.rstrip("uUlL"), 0)
        if -(2**31) <= num < 2**31:
            return "int", str(num)
        if 0 <= num < 2**32:
            return "uint", str(num) + "u"
        if -(2**63) <= num < 2**63:
            return "long", str(num) + "L"
        return "ulong", str(num) + "UL"
    if re.match(r"^-?\d+\.\d*([eE][-+]?\d+)?[fF]?$", v):
        return ("float", v) if v.lower().endswith("f") else ("double", v)
    if re.match(r'^"([^"\\]|\\.)*"$', v):
        return "string", v
    raise ParseError("#define value %r has no C# mapping" % value)


class Gen:
    def __init__(self, h):
        self.h = h
        self.structs = h.struct_names()
        self.opaque = h.opaque_names()
        self.callbacks = h.callback_names()
        self.enums = h.enum_names()

    def scalar(self, t):
        t = self.h.aliases.get(t, t)
        if t in SCALARS:
            return SCALARS[t]
        if t in self.enums:
            return t
        raise ParseError("type %r has no C# mapping" % t)

    def layout_fields(self, sname, fields):
        """[(C designator, C# field name)] for the layout check."""
        out = []
        for f in fields:
            t, depth, _ = base_type(f["ctype"])
            name = f["name"]
            if f["count"] and depth == 0 and t in self.structs:
                for k in range(self.count(f)):
                    out.append(("%s[%d]" % (name, k), "%s_%d" % (name, k)))
            elif depth == 0 and t == "bool":
                out.append((name, "_" + name))
            else:
                out.append((name, name))
        return out

    def count(self, f):
        c = f["count"]
        return int(c) if c.isdigit() else self.h.define_value(c)

    def struct(self, name, fields, doc):
        o = doc_lines(doc, "    ")
        o.append("    [StructLayout(LayoutKind.Sequential)]")
        o.append("    public unsafe struct %s" % name)
        o.append("    {")
        for f in fields:
            t, depth, const = base_type(f["ctype"])
            fname = f["name"]
            if not (depth == 0 and not f["count"] and t == "bool"):
                o += doc_lines(f["doc"], "        ")
            if f["count"]:
                if depth != 0:
                    raise ParseError("array of pointers %s.%s" % (name, fname))
                n = self.count(f)
                o.append("        /// <summary>Elements in the C array `%s`.</summary>" % fname)
                o.append("        public const int %s_capacity = %d;" % (fname, n))
                if t in self.structs:
                    for k in range(n):
                        o.append("        public %s %s_%d;" % (t, fname, k))
                    o.append("        /// <summary>Element <paramref name=\"i\"/> of the C array `%s` (0..%d).</summary>" % (fname, n - 1))
                    o.append("        public %s %s(int i)" % (t, ident(fname)))
                    o.append("        {")
                    o.append("            if ((uint)i >= %d) throw new IndexOutOfRangeException();" % n)
                    o.append("            fixed (%s* p = &%s_0) return p[i];" % (t, fname))
                    o.append("        }")
                else:
                    cs = self.scalar(t)
                    if cs not in FIXED_OK:
                        raise ParseError("array of %s in %s.%s" % (t, name, fname))
                    o.append("        public fixed %s %s[%d];" % (cs, ident(fname), n))
                continue
            if depth > 0 or t in self.callbacks:
                o.append("        public IntPtr %s;" % ident(fname))
                continue
            if t in self.structs:
                o.append("        public %s %s;" % (t, ident(fname)))
                continue
            cs = self.scalar(t)
            if cs == "bool":
                o.append("        private byte _%s;" % fname)
                o += doc_lines(f["doc"], "        ")
                o.append("        public bool %s { get { return _%s != 0; } set { _%s = value ? (byte)1 : (byte)0; } }"
                         % (ident(fname), fname, fname))
            else:
                o.append("        public %s %s;" % (cs, ident(fname)))
        o.append("    }")
        return o

    def param(self, params, k, for_callback=False):
        ctype, name = params[k]
        t, depth, const = base_type(ctype)
        nxt = params[k + 1] if k + 1 < len(params) else None
        nxt_is_len = nxt is not None and base_type(nxt[0])[:2] in (("size_t", 0), ("uintptr_t", 0))
        if t in self.callbacks and depth == 0:
            return "IntPtr", name
        if depth == 0:
            cs = self.scalar(t)
            if cs == "bool":
                return "[MarshalAs(UnmanagedType.U1)] bool", name
            if t in self.structs:
                raise ParseError("struct passed by value: %s" % name)
            return cs, name
        if for_callback or t == "void":
            return "IntPtr", name
        if t in self.opaque:
            if depth == 1:
                return "IntPtr", name
            if depth == 2 and not const:
                return "out IntPtr", name
            raise ParseError("handle pointer %r" % ctype)
        if depth != 1:
            return "IntPtr", name
        if t in self.structs:
            return "ref " + t, name
        cs = self.scalar(t)
        if nxt_is_len and cs not in ("bool", "UIntPtr", "IntPtr"):
            return ("[In] " if const else "[Out] ") + cs + "[]", name
        if t == "char" and const:
            return "byte[]", name
        if not const:
            if cs == "bool":
                return "[MarshalAs(UnmanagedType.U1)] out bool", name
            return "out " + cs, name
        return "IntPtr", name

    def ret(self, ctype):
        t, depth, _ = base_type(ctype)
        if depth > 0:
            return "IntPtr"
        if t == "void":
            return "void"
        cs = self.scalar(t)
        if cs == "bool":
            return "[return: MarshalAs(UnmanagedType.U1)] bool"
        return cs

    def render(self):
        h = self.h
        o = [
            "// <auto-generated>",
            "// Generated by bindings/csharp/gen.py from include/voice.h; do not edit.",
            "// Regenerate: python3 bindings/csharp/gen.py",
            "// </auto-generated>",
            "#pragma warning disable 1591",
            "using System;",
            "using System.Runtime.InteropServices;",
            "using System.Text;",
            "",
            "namespace Voice",
            "{",
        ]
        for name, members, doc in h.enums:
            o += doc_lines(doc, "    ")
            o.append("    public enum %s : uint" % name)
            o.append("    {")
            for m, v, mdoc in members:
                o += doc_lines(mdoc, "        ")
                o.append("        %s = %s," % (m, v))
            o.append("    }")
            o.append("")
        for name, fields, doc in h.structs:
            o += self.struct(name, fields, doc)
            o.append("")
        for name, rt, params, doc in h.callbacks:
            o += doc_lines(doc, "    ")
            o.append("    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]")
            ps = ", ".join("%s %s" % (self.param(params, k, True)[0], ident(params[k][1])) for k in range(len(params)))
            o.append("    public delegate %s %s(%s);" % (self.ret(rt), name, ps))
            o.append("")
        o += [
            "    /// <summary>The C API of include/voice.h, one to one (see README.md for the type mapping).</summary>",
            "    public static partial class Native",
            "    {",
            "        /// <summary>The library name for DllImport: libvoice.so / voice.dll / libvoice.dylib;",
            "        /// statically linked into the player on iOS and WebGL.</summary>",
            "#if (UNITY_IOS || UNITY_WEBGL) && !UNITY_EDITOR",
            "        public const string Lib = \"__Internal\";",
            "#else",
            "        public const string Lib = \"voice\";",
            "#endif",
            "",
        ]
        for name, value, doc in h.defines:
            cs, lit = literal(value)
            o += doc_lines(doc, "        ")
            o.append("        public const %s %s = %s;" % (cs, name, lit))
        for opaque, doc in h.opaque:
            pass
        o.append("")
        for name, rt, params, doc in h.functions:
            o += doc_lines(doc, "        ")
            o.append("        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]")
            ret = self.ret(rt)
            attr = ""
            if ret.startswith("[return:"):
                attr, ret = ret.split("] ", 1)
                o.append("        " + attr + "]")
            ps = ", ".join("%s %s" % (self.param(params, k)[0], ident(params[k][1])) for k in range(len(params)))
            o.append("        public static extern %s %s(%s);" % (ret, name, ps))
            o.append("")
        o += [
            "        /// <summary>`text` as NUL-terminated UTF-8 bytes (for `const char *` parameters).</summary>",
            "        public static byte[] Utf8z(string text)",
            "        {",
            "            if (text == null) return null;",
            "            int n = Encoding.UTF8.GetByteCount(text);",
            "            var b = new byte[n + 1];",
            "            Encoding.UTF8.GetBytes(text, 0, text.Length, b, 0);",
            "            return b;",
            "        }",
            "",
            "        /// <summary>Copies `text` as NUL-terminated UTF-8 into unmanaged memory (for `const char *`",
            "        /// fields); release it with <see cref=\"Utf8Free\"/>. null gives IntPtr.Zero.</summary>",
            "        public static IntPtr Utf8Alloc(string text)",
            "        {",
            "            if (text == null) return IntPtr.Zero;",
            "            byte[] b = Utf8z(text);",
            "            IntPtr p = Marshal.AllocHGlobal(b.Length);",
            "            Marshal.Copy(b, 0, p, b.Length);",
            "            return p;",
            "        }",
            "",
            "        /// <summary>Frees memory from <see cref=\"Utf8Alloc\"/> (IntPtr.Zero is ignored).</summary>",
            "        public static void Utf8Free(IntPtr p)",
            "        {",
            "            if (p != IntPtr.Zero) Marshal.FreeHGlobal(p);",
            "        }",
            "",
            "        /// <summary>Reads a NUL-terminated UTF-8 string (IntPtr.Zero gives null).</summary>",
            "        public static string Utf8Read(IntPtr p)",
            "        {",
            "            if (p == IntPtr.Zero) return null;",
            "            int n = 0;",
            "            while (Marshal.ReadByte(p, n) != 0) n++;",
            "            var b = new byte[n];",
            "            Marshal.Copy(p, b, 0, n);",
            "            return Encoding.UTF8.GetString(b);",
            "        }",
            "",
            "        /// <summary>Reads `len` bytes of UTF-8 at `p` (a `fixed` char buffer and its `_len` field),",
            "        /// clamped to `capacity`.</summary>",
            "        public static unsafe string Utf8Read(byte* p, UIntPtr len, int capacity)",
            "        {",
            "            ulong n = Math.Min((ulong)len, (ulong)capacity);",
            "            return new string((sbyte*)p, 0, (int)n, Encoding.UTF8);",
            "        }",
            "    }",
            "}",
            "",
        ]
        return "\n".join(o)

    def layout(self):
        """(layout.c, Layout.g.cs): each prints `S size N`, `S.F offset N` and `C value V` lines."""
        h = self.h
        c = ['#include <stddef.h>', '#include <stdio.h>', '#include "voice.h"', "int main(void) {"]
        cs = [
            "// Generated by bindings/csharp/gen.py --layout; do not edit.",
            "using System;",
            "using System.Collections.Generic;",
            "using System.Runtime.InteropServices;",
            "namespace Voice.Tests",
            "{",
            "    static class Layout",
            "    {",
            "        /// <summary>The same lines layout.c prints, from the C# side.</summary>",
            "        public static unsafe List<string> Lines()",
            "        {",
            "            var l = new List<string>();",
        ]
        for name, fields, _ in h.structs:
            c.append('    printf("%s size %%zu\\n", sizeof(struct %s));' % (name, name))
            cs.append('            l.Add("%s size " + Marshal.SizeOf(typeof(%s)));' % (name, name))
            # The managed size equals the marshalled size only for a blittable struct.
            cs.append('            if (sizeof(%s) != Marshal.SizeOf(typeof(%s))) l.Add("%s is not blittable");'
                      % (name, name, name))
            for cf, csf in self.layout_fields(name, fields):
                c.append('    printf("%s.%s offset %%zu\\n", offsetof(struct %s, %s));' % (name, cf, name, cf))
                cs.append('            l.Add("%s.%s offset " + Marshal.OffsetOf(typeof(%s), "%s"));' % (name, cf, name, csf))
        for name, value, _ in h.defines:
            kind, _ = literal(value)
            if kind in ("int", "uint", "long", "ulong"):
                c.append('    printf("%s value %%lld\\n", (long long)(%s));' % (name, name))
                cs.append('            l.Add("%s value " + Native.%s);' % (name, name))
        for ename, members, _ in h.enums:
            for m, _, _ in members:
                c.append('    printf("%s value %%lld\\n", (long long)(%s));' % (m, m))
                cs.append('            l.Add("%s value " + (long)%s.%s);' % (m, ename, m))
        c += ["    return 0;", "}", ""]
        cs += ["            return l;", "        }", "    }", "}", ""]
        return "\n".join(c), "\n".join(cs)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(os.path.dirname(here))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--header", default=os.path.join(root, "include", "voice.h"))
    ap.add_argument("--out", default=os.path.join(here, "Voice.Native.g.cs"))
    ap.add_argument("--layout", metavar="DIR")
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args()
    try:
        g = Gen(parse(a.header))
        text = g.render()
        layout = g.layout() if a.layout else None
    except ParseError as e:
        print("gen.py: %s: %s" % (a.header, e), file=sys.stderr)
        return 2
    if a.check:
        try:
            with open(a.out, encoding="utf-8") as f:
                old = f.read()
        except OSError:
            old = None
        if old != text:
            print("gen.py: %s is stale; regenerate with: python3 bindings/csharp/gen.py" % a.out, file=sys.stderr)
            return 1
    else:
        with open(a.out, "w", encoding="utf-8") as f:
            f.write(text)
    if layout:
        os.makedirs(a.layout, exist_ok=True)
        with open(os.path.join(a.layout, "layout.c"), "w", encoding="utf-8") as f:
            f.write(layout[0])
        with open(os.path.join(a.layout, "Layout.g.cs"), "w", encoding="utf-8") as f:
            f.write(layout[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
