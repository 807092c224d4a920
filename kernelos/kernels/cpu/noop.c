/* A kernel that does nothing: the cpu side of a DAG node whose work the cpu does elsewhere (the
 * partial-product node of a cross-block split-K GEMM: the cpu computes that GEMM whole in the
 * reduce node). */
KOS_KERNEL($name) {
    (void)L;
    (void)block_begin;
    (void)block_end;
    (void)args;
}
