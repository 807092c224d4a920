"""Row kernels: a normalisation over a row (Softmax, LayerNormalization) in ONE kernel. Each row's
statistics (max and sum, mean and inverse std) are passes over the row inside the kernel, then
every element is computed from them, runs the fused elementwise epilogue and is stored.

A row is the reduced dims [first, last) of the input: element j of row r sits at linear index
r / inner * (row_len * inner) + r % inner + j * inner, inner being the product of the dims after
the row. The element being processed is the C variable kos_x (the row input's dtype); a pass's
term reads it and earlier passes' results; the anchor's output expression reads them too, and a
kept pass's term per element (kos_t<p>: Softmax's exp(x - max), computed once), held in registers /
on the stack where the row fits, else recomputed.
"""

from dataclasses import dataclass

import numpy as np

from .codegen import (CPU_CHUNK, NAME_PLACEHOLDER, KernelSpec, PointwiseBuilder, _combine, _prelude, _template,
                      ctype)

CUDA_ROW_THREADS = 256      # threads per block
CUDA_ROW_WARP_MAX = 512     # rows up to this long get a warp each (8 rows per block), longer a block
CUDA_ROW_CACHE = 16         # elements per thread held in registers across the passes (else re-read)
CPU_ROW_KEEP_MAX = 4096     # rows up to this long keep a pass's terms on the stack (else recomputed)


@dataclass
class RowPass:
    var: str            # C variable with the pass's result, for later passes and the output
    combine: str        # "sum" | "max" (max propagates NaN)
    acc_ctype: str
    init: str
    term: str           # C expression of kos_x and earlier passes' vars
    finish: str         # C expression of acc (the combined terms)
    keep: bool = False  # the output reads the term per element (kos_t<p>)

    @property
    def kept(self) -> str:
        return self.var.replace("kos_s", "kos_k")

    @property
    def term_var(self) -> str:
        return self.var.replace("kos_s", "kos_t")


class RowBuilder(PointwiseBuilder):
    """A PointwiseBuilder over the row input's shape whose kernel is one row per cpu task / warp or
    block of CUDA threads. Ops call row_input(), row_pass(), row_store(), then define() / store()
    as for a pointwise kernel (the output expression and its epilogue)."""

    def __init__(self, shape, ctx, first: int, last: int):
        super().__init__(shape, ctx)
        self.row_len = int(np.prod(self.out_shape[first:last], dtype=np.int64))
        self.inner = int(np.prod(self.out_shape[last:], dtype=np.int64))
        self.rows = self.n // self.row_len
        self.passes: list = []
        self.row_stores: list = []      # (param, var): stored once per row at index `row`
        self.x_param = self.x_ctype = None

    def row_input(self, value: str):
        """The tensor whose elements the passes read: kos_x; val(value) is kos_x from now on."""
        self.x_param, self.x_ctype = self.param(value), ctype(self.dtype(value))
        self.temps[value] = "kos_x"

    def row_pass(self, combine: str, term: str, acc_ctype: str, init: str, finish: str = "acc",
                 keep: bool = False) -> str:
        """A statistic: finish(combine over the row of term); its C variable. keep: the output
        also reads the term per element, as row_term(var)."""
        var = f"kos_s{len(self.passes)}"
        self.passes.append(RowPass(var, combine, acc_ctype, init, term, finish, keep))
        return var

    def row_term(self, var: str) -> str:
        """The kept term of pass `var` at the current element."""
        return next(p for p in self.passes if p.var == var and p.keep).term_var

    def row_store(self, value: str, var: str):
        """A per-row statistic stored as `value` (shaped like the row input with the row dims 1)."""
        self.row_stores.append((self.param(value, out=True), var))

    # --- rendering ---------------------------------------------------------------------------
    def _element_body(self, indent: int, kept_at) -> str:
        """The output code of one element; kept_at(pass): where its kept term is held, or None."""
        binds = [f"const {p.acc_ctype} {p.term_var} = {kept_at(p) or f'({p.term})'};" for p in self.passes if p.keep]
        return "\n".join(" " * indent + ln for ln in binds + [self.coords_code()] + self.pre + self.post)

    def _step(self, p: RowPass, keep_into) -> str:
        """One pass step on kos_x: combine its term (stored at keep_into first where given)."""
        if keep_into is None:
            return _combine(p.combine, "acc", p.term)
        return f"const {p.acc_ctype} kos_t = {p.term}; {keep_into} = kos_t; {_combine(p.combine, 'acc', 'kos_t')}"

    def _cpu(self, fields, unpack) -> tuple:
        per_block = max(1, CPU_CHUNK // self.row_len)
        keep = self.row_len <= CPU_ROW_KEEP_MAX
        stats = []
        for p in self.passes:
            if p.keep and keep:
                stats.append(f"{p.acc_ctype} {p.kept}[{self.row_len}];")
            stats += [f"{p.acc_ctype} {p.var};",
                      f"{{ {p.acc_ctype} acc = {p.init}, acc_t; (void)acc_t;",
                      f"  for (int64_t j = 0; j < {self.row_len}; j++) {{",
                      f"    const {self.x_ctype} kos_x = {self.x_param}[kos_base + j * {self.inner}];",
                      f"    {self._step(p, f'{p.kept}[j]' if p.keep and keep else None)}",
                      "  }",
                      f"  {p.var} = {p.finish}; }}"]
        stats += [f"{out}[row] = {var};" for out, var in self.row_stores]
        src = _template("cpu/rownorm.c").substitute(
            fields=fields, unpack=unpack, name=NAME_PLACEHOLDER, rows_per_block=per_block, rows=self.rows,
            inner=self.inner, row_span=self.row_len * self.inner, row_len=self.row_len, x_t=self.x_ctype,
            x=self.x_param, stats="\n".join(" " * 12 + ln for ln in stats),
            body=self._element_body(16, lambda p: f"{p.kept}[j]" if keep else None))
        return _prelude("cpu") + src, -(-self.rows // per_block)

    def _cuda_lanes(self) -> int:
        return 32 if self.row_len <= CUDA_ROW_WARP_MAX else CUDA_ROW_THREADS

    def _cuda(self, params) -> tuple:
        lanes = self._cuda_lanes()
        per = -(-self.row_len // lanes)
        cached = per <= CUDA_ROW_CACHE
        x_at = f"{self.x_param}[kos_base + j * {self.inner}]"
        full = self.row_len % lanes == 0         # every thread has all `per` elements: no bounds test

        def each(code, load):
            """`code` for every element j of this thread, kos_x bound to it."""
            if cached:
                guard = "" if full else f"if (j < {self.row_len}) "
                return ["#pragma unroll", f"for (int kk = 0; kk < {per}; kk++) {{",
                        f"    const int64_t j = lane + kk * {lanes};",
                        f"    {guard}{{ const {self.x_ctype} kos_x = {load}; (void)kos_x;", *code, "    }", "}"]
            return [f"for (int64_t j = lane; j < {self.row_len}; j += {lanes}) {{",
                    f"    const {self.x_ctype} kos_x = {x_at}; (void)kos_x;", *code, "}"]

        lines = []
        if cached:
            lines += [f"{self.x_ctype} kos_xs[{per}];", "#pragma unroll",
                      f"for (int kk = 0; kk < {per}; kk++) {{",
                      f"    const int64_t j = lane + kk * {lanes};",
                      f"    {'' if full else f'if (j < {self.row_len}) '}kos_xs[kk] = {x_at};", "}"]
        load = "kos_xs[kk]" if cached else x_at
        for p in self.passes:
            fn = "kos_row_sum" if p.combine == "sum" else "kos_row_max"
            if p.keep and cached:
                lines.append(f"{p.acc_ctype} {p.kept}[{per}];")
            lines += [f"{p.acc_ctype} {p.var};",
                      f"{{ __shared__ {p.acc_ctype} kos_part[{max(1, lanes // 32)}];",
                      f"  {p.acc_ctype} acc = {p.init}, acc_t; (void)acc_t;",
                      *each(["    " + self._step(p, f"{p.kept}[kk]" if p.keep and cached else None)], load),
                      f"  acc = {fn}(acc, kos_part);",
                      f"  {p.var} = {p.finish}; }}"]
        if self.row_stores:
            lines.append("if (lane == 0) { " + " ".join(f"{out}[row] = {var};" for out, var in self.row_stores) + " }")
        lines += each(["    const int64_t i = kos_base + j * " + str(self.inner) + ";",
                       self._element_body(4, lambda p: f"{p.kept}[kk]" if cached else None)], load)
        threads = CUDA_ROW_THREADS       # a warp's rows 8 to a block, or one row a block
        src = _template("cuda/rownorm.cu").substitute(
            name=NAME_PLACEHOLDER, params=params, lanes=lanes, threads=threads, rows=self.rows, inner=self.inner,
            row_len=self.row_len, row_span=self.row_len * self.inner, body="\n".join("    " + ln for ln in lines))
        blocks = -(-self.rows // (threads // lanes))
        shared_B = sum(max(1, lanes // 32) * (8 if p.acc_ctype in ("double", "int64_t") else 4) for p in self.passes)
        return _prelude("cuda") + src, ((blocks, 1, 1), (threads, 1, 1)), threads, shared_B

    def spec(self) -> KernelSpec:
        fields = "\n".join(f"    {'' if p.out else 'const '}{p.ctype} *{p.cname};" for p in self.params)
        unpack = "\n".join(f"    {'' if p.out else 'const '}{p.ctype} *KOS_RESTRICT {p.cname} = a->{p.cname};"
                           for p in self.params)
        cparams = ", ".join(f"{'' if p.out else 'const '}{p.ctype} *KOS_RESTRICT {p.cname}" for p in self.params)
        cpu, cpu_grid = self._cpu(fields, unpack)
        cuda, cuda_dims, threads, shared_B = self._cuda(cparams)
        return KernelSpec(self.params, {"cpu": cpu, "cuda": cuda}, {"cpu": ((cpu_grid, 1, 1), (1, 1, 1)), "cuda": cuda_dims},
                          {"cpu": 1, "cuda": threads}, {"cpu": 0, "cuda": shared_B}, "row")
