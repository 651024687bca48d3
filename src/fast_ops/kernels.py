"""The native kernels of ``fast_ops.cc`` as MindSpore AOT custom ops, each with its backward.

One ``ops.Custom`` per kernel and process (cached here); the Cells of ``conv`` and
``norm`` call them. All work in GRAPH and PYNATIVE mode, float32, NCHW, on CPU.
"""
import numpy as np

import mindspore as ms
import mindspore.ops as ops

from . import native

__all__ = ["require_float32", "pointwise_op", "gemm_available", "depthwise_op", "im2col_op", "bn_train_op",
           "bn_train_add_relu_op", "bn_infer_op", "pointwise_bn_train_op", "pointwise_bn_op", "pointwise_bn_add_relu_op",
           "depthwise_bn_op", "add_relu_op", "pool_op", "global_avg_pool_op", "POOL_PADDINGS", "shuffle_permutation"]

_cache = {}


def require_float32(where, *tensors):
    """Refuse, while the graph is built, a tensor that is not float32: the native kernels read float32 only.

    ``where`` names the layer (e.g. ``features.3``). Mixed precision (amp_level O2/O3)
    casts to float16, so it is an error here rather than a failed kernel call.
    """
    for tensor in tensors:
        if tensor.dtype != ms.float32:
            raise TypeError(f"{where}: the fast CPU kernels compute in float32 only, but this layer gets "
                            f"{tensor.dtype}; on CPU train with amp_level O0 (train.py does), or build the "
                            "network with conv_impl='plain'")


def _checked_dtype(name, out_dtype):
    """``out_dtype`` of a kernel, refusing (at graph build) inputs other than float32 (and int32 indices)."""
    def infer(*dtypes):
        elements = [d.element_type() if hasattr(d, "element_type") else d for d in dtypes]  # Tensor[Float32]
        wrong = [str(d) for d in elements if d not in (ms.float32, ms.int32)]
        if wrong:
            raise TypeError(f"the fast CPU kernel {name} takes float32 tensors, got {', '.join(wrong)}; "
                            "compute in float32 (amp_level O0) or use conv_impl='plain'")
        return out_dtype(*dtypes)
    return infer


def _custom(name, out_shape, out_dtype, bprop=None):
    path = native.library_path(warn=False)
    if path is None:
        raise native.FastOpsUnavailable("the fast CPU kernels are not built; use conv_impl='plain'")
    return ops.Custom(f"{path}:{name}", out_shape=out_shape, out_dtype=_checked_dtype(name, out_dtype),
                      func_type="aot", bprop=bprop)


def _cached(key, make):
    if key not in _cache:
        _cache[key] = make()
    return _cache[key]


def _out_hw(shape, stride):
    return (shape[2] - 1) // stride + 1, (shape[3] - 1) // stride + 1


def shuffle_permutation(channels, groups):
    """perm with ``channel_shuffle(x, groups)[:, k] == x[:, perm[k]]`` (src.shufflenetv1.channel_shuffle)."""
    if channels % groups:
        raise ValueError(f"channels={channels} is not divisible by shuffle groups={groups}")
    return np.arange(channels).reshape(channels // groups, groups).transpose(1, 0).reshape(channels)


def gemm_available():
    """Whether :func:`pointwise_op` can run (it needs oneDNN's sgemm in the process; cached)."""
    return _cached("gemm", native.gemm_available)


def _pointwise_backward(user=""):
    return _cached(("pw_bwd", user), lambda: _custom(f"fast_pw_bwd{'_' + user if user else ''}",
                                                     out_shape=lambda x, w, dy: (x, w),
                                                     out_dtype=lambda x, w, dy: (x, w)))


def _depthwise_backward(stride):
    return _cached(("dw_bwd", stride), lambda: _custom(f"fast_dw3x3_bwd_s{stride}",
                                                       out_shape=lambda x, w, perm, dy: (x, w),
                                                       out_dtype=lambda x, w, perm, dy: (x, w)))


def _bn_infer_backward(relu):
    return _cached(("bn_infer_bwd", relu), lambda: _custom(f"fast_bn_infer_bwd{'_relu' if relu else ''}",
                                                           out_shape=lambda x, g, m, v, h, y, dy: (x, g, g),
                                                           out_dtype=lambda x, g, m, v, h, y, dy: (x, g, g)))


def pointwise_op(user=""):
    """(x (B, Cin, H, W), weight (Cout, Cin / g, 1, 1)) -> 1x1 convolution with g groups, g from the shapes.

    ``user`` ("" or "dense") picks a separately named copy of the kernels: MindSpore's
    profiler names all backward ops of one kernel name after the first Cell using it.
    """
    def make():
        backward = _pointwise_backward(user)

        def bprop(x, weight, out, dout):
            dx, dweight = backward(x, weight, dout)
            return dx, dweight

        return _custom(f"fast_pw_fwd{'_' + user if user else ''}", out_shape=lambda x, w: (x[0], w[0], x[2], x[3]),
                       out_dtype=lambda x, w: x, bprop=bprop)
    return _cached(("pw", user), make)


def depthwise_op(stride):
    """(x, weight (C, 1, 3, 3), perm (C,) int32) -> 3x3 depthwise conv, pad 1, of x[:, perm]."""
    def make():
        backward = _depthwise_backward(stride)

        def bprop(x, weight, perm, out, dout):
            dx, dweight = backward(x, weight, perm, dout)
            return dx, dweight, ops.zeros_like(perm)

        return _custom(f"fast_dw3x3_fwd_s{stride}", out_shape=lambda x, w, perm: (x[0], x[1], *_out_hw(x, stride)),
                       out_dtype=lambda x, w, perm: x, bprop=bprop)
    return _cached(("dw", stride), make)


def im2col_op(stride):
    """x (B, C, H, W) -> columns (B, C * 9, Ho, Wo) of a 3x3, pad 1 convolution."""
    def make():
        col2im = _custom(f"fast_col2im3x3_s{stride}", out_shape=lambda cols, x: x, out_dtype=lambda cols, x: x)

        def bprop(x, out, dout):
            return (col2im(dout, x),)

        return _custom(f"fast_im2col3x3_s{stride}", out_shape=lambda x: (x[0], x[1] * 9, *_out_hw(x, stride)),
                       out_dtype=lambda x: x, bprop=bprop)
    return _cached(("im2col", stride), make)


def bn_train_op(relu):
    """(x, gamma, beta, moving_mean, moving_variance, hyper (eps, momentum)) ->
    (y, batch mean, biased batch variance, new moving mean, new moving variance); y through ReLU if ``relu``."""
    suffix = "_relu" if relu else ""

    def make():
        backward = _custom(f"fast_bn_train_bwd{suffix}", out_shape=lambda x, g, m, v, h, y, dy: (x, g, g),
                           out_dtype=lambda x, g, m, v, h, y, dy: (x, g, g))

        def bprop(x, gamma, beta, moving_mean, moving_var, hyper, out, dout):
            y, mean, var, _, _ = out
            dx, dgamma, dbeta = backward(x, gamma, mean, var, hyper, y, dout[0])
            return (dx, dgamma, dbeta, ops.zeros_like(moving_mean), ops.zeros_like(moving_var),
                    ops.zeros_like(hyper))

        return _custom(f"fast_bn_train_fwd{suffix}", out_shape=lambda x, g, b, m, v, h: (x, g, g, g, g),
                       out_dtype=lambda x, g, b, m, v, h: (x, g, g, g, g), bprop=bprop)
    return _cached(("bn_train", relu), make)


def bn_train_add_relu_op():
    """Training: (x, gamma, beta, moving_mean, moving_variance, hyper, residual) ->
    (relu(BN(x) + residual), batch mean, biased batch variance, new moving mean, new moving variance):
    a ShuffleNet unit's last BN and its residual join in one pass, and one pass for their gradients."""
    def make():
        backward = _custom("fast_bn_train_bwd_add_relu", out_shape=lambda x, g, m, v, h, y, dy: (x, g, g, x),
                           out_dtype=lambda x, g, m, v, h, y, dy: (x, g, g, x))

        def bprop(x, gamma, beta, moving_mean, moving_var, hyper, residual, out, dout):
            y, mean, var, _, _ = out
            dx, dgamma, dbeta, dresidual = backward(x, gamma, mean, var, hyper, y, dout[0])
            return (dx, dgamma, dbeta, ops.zeros_like(moving_mean), ops.zeros_like(moving_var),
                    ops.zeros_like(hyper), dresidual)

        return _custom("fast_bn_train_fwd_add_relu", out_shape=lambda x, g, b, m, v, h, r: (x, g, g, g, g),
                       out_dtype=lambda x, g, b, m, v, h, r: (x, g, g, g, g), bprop=bprop)
    return _cached("bn_train_add_relu", make)


def bn_infer_op(relu):
    """(x, gamma, beta, moving_mean, moving_variance, hyper (eps, momentum)) -> y; through ReLU if ``relu``."""
    suffix = "_relu" if relu else ""

    def make():
        backward = _bn_infer_backward(relu)

        def bprop(x, gamma, beta, mean, var, hyper, out, dout):
            dx, dgamma, dbeta = backward(x, gamma, mean, var, hyper, out, dout)
            return dx, dgamma, dbeta, ops.zeros_like(mean), ops.zeros_like(var), ops.zeros_like(hyper)

        return _custom(f"fast_bn_infer_fwd{suffix}", out_shape=lambda x, *rest: x, out_dtype=lambda x, *rest: x,
                       bprop=bprop)
    return _cached(("bn_infer", relu), make)


def pointwise_bn_train_op(mode, user=""):
    """Training: (x, weight, gamma, beta, moving_mean, moving_variance, hyper[, residual]) ->
    (y, z, batch mean, biased batch variance, new moving mean, new moving variance): z the 1x1
    convolution of x, y its BN on the batch statistics, by ``mode``: 0 BN, 1 BN then ReLU,
    2 relu(BN + residual) (a ShuffleNet unit's join; residual the 8th input).

    One kernel forward (the BN's sums taken while each GEMM output is in cache) and one
    backward (the BN's input gradient never goes to memory); the results are the separate
    kernels', bit for bit. ``user`` as in :func:`pointwise_op`.
    """
    if mode not in (0, 1, 2):
        raise ValueError(f"pointwise_bn_train_op: mode is 0, 1 or 2, got {mode!r}")
    suffix = ("", "_relu", "_add_relu")[mode] + (f"_{user}" if user else "")

    def make():
        def grads(x, w, z, g, *rest):
            return (x, w, g, g, z) if mode == 2 else (x, w, g, g)

        backward = _custom(f"fast_pw_bn_train_bwd{suffix}", out_shape=grads, out_dtype=grads)

        if mode == 2:
            def bprop(x, weight, gamma, beta, moving_mean, moving_var, hyper, residual, out, dout):
                y, z, mean, var, _, _ = out
                dx, dweight, dgamma, dbeta, dresidual = backward(x, weight, z, gamma, mean, var, hyper, y, dout[0])
                return (dx, dweight, dgamma, dbeta, ops.zeros_like(moving_mean), ops.zeros_like(moving_var),
                        ops.zeros_like(hyper), dresidual)
        else:
            def bprop(x, weight, gamma, beta, moving_mean, moving_var, hyper, out, dout):
                y, z, mean, var, _, _ = out
                dx, dweight, dgamma, dbeta = backward(x, weight, z, gamma, mean, var, hyper, y, dout[0])
                return (dx, dweight, dgamma, dbeta, ops.zeros_like(moving_mean), ops.zeros_like(moving_var),
                        ops.zeros_like(hyper))

        def outputs(x, w, g, *rest):
            y = (x[0], w[0], x[2], x[3]) if isinstance(x, (list, tuple)) else x
            return (y, y, g, g, g, g)

        return _custom(f"fast_pw_bn_train_fwd{suffix}", out_shape=outputs, out_dtype=outputs, bprop=bprop)
    return _cached(("pw_bn_train", mode, user), make)


def pointwise_bn_op(relu):
    """Inference: (x, weight, gamma, beta, moving_mean, moving_variance, hyper) ->
    1x1 conv then BN on the moving statistics (then ReLU if ``relu``), in one kernel."""
    def make():
        conv, conv_backward = pointwise_op(), _pointwise_backward()
        bn_backward = _bn_infer_backward(relu)

        # Gradients (rare in eval mode) recompute the convolution and use the unfused kernels.
        def bprop(x, weight, gamma, beta, mean, var, hyper, out, dout):
            z = conv(x, weight)
            dz, dgamma, dbeta = bn_backward(z, gamma, mean, var, hyper, out, dout)
            dx, dweight = conv_backward(x, weight, dz)
            return dx, dweight, dgamma, dbeta, ops.zeros_like(mean), ops.zeros_like(var), ops.zeros_like(hyper)

        return _custom(f"fast_pw_bn_fwd{'_relu' if relu else ''}",
                       out_shape=lambda x, w, *rest: (x[0], w[0], x[2], x[3]), out_dtype=lambda x, *rest: x,
                       bprop=bprop)
    return _cached(("pw_bn", relu), make)


def pointwise_bn_add_relu_op():
    """Inference: (x, weight, gamma, beta, moving_mean, moving_variance, hyper, residual) ->
    relu(BN(1x1 conv(x)) + residual): a ShuffleNet unit's last convolution and its join, in one kernel."""
    def make():
        conv, conv_backward = pointwise_op(), _pointwise_backward()
        bn, bn_backward = bn_infer_op(False), _bn_infer_backward(False)
        relu_grad = _relu_grad()

        def bprop(x, weight, gamma, beta, mean, var, hyper, residual, out, dout):
            z = conv(x, weight)
            u = bn(z, gamma, beta, mean, var, hyper)
            du = relu_grad(out, dout)
            dz, dgamma, dbeta = bn_backward(z, gamma, mean, var, hyper, u, du)
            dx, dweight = conv_backward(x, weight, dz)
            return (dx, dweight, dgamma, dbeta, ops.zeros_like(mean), ops.zeros_like(var), ops.zeros_like(hyper),
                    du)

        return _custom("fast_pw_bn_add_relu_fwd", out_shape=lambda x, w, *rest: (x[0], w[0], x[2], x[3]),
                       out_dtype=lambda x, *rest: x, bprop=bprop)
    return _cached("pw_bn_add_relu", make)


def depthwise_bn_op(stride):
    """Inference: (x, weight, perm, gamma, beta, moving_mean, moving_variance, hyper) ->
    depthwise conv (as :func:`depthwise_op`) then BN on the moving statistics, in one kernel."""
    def make():
        conv, conv_backward = depthwise_op(stride), _depthwise_backward(stride)
        bn_backward = _bn_infer_backward(False)

        def bprop(x, weight, perm, gamma, beta, mean, var, hyper, out, dout):
            z = conv(x, weight, perm)
            dz, dgamma, dbeta = bn_backward(z, gamma, mean, var, hyper, out, dout)
            dx, dweight = conv_backward(x, weight, perm, dz)
            return (dx, dweight, ops.zeros_like(perm), dgamma, dbeta, ops.zeros_like(mean), ops.zeros_like(var),
                    ops.zeros_like(hyper))

        return _custom(f"fast_dw3x3_bn_fwd_s{stride}",
                       out_shape=lambda x, *rest: (x[0], x[1], *_out_hw(x, stride)), out_dtype=lambda x, *rest: x,
                       bprop=bprop)
    return _cached(("dw_bn", stride), make)


def _relu_grad():
    return _cached("relu_grad", lambda: _custom("fast_relu_grad", out_shape=lambda y, dy: y,
                                                out_dtype=lambda y, dy: y))


def add_relu_op():
    """(a, b) -> max(a + b, 0), one pass; the gradient of both inputs is dy where the output is > 0."""
    def make():
        relu_grad = _relu_grad()

        def bprop(a, b, out, dout):
            grad = relu_grad(out, dout)
            return grad, grad

        return _custom("fast_add_relu", out_shape=lambda a, b: a, out_dtype=lambda a, b: a, bprop=bprop)
    return _cached("add_relu", make)


# ShuffleNetV1's two paddings of its 3x3 stride-2 pools (src.shufflenetv1.POOL_PADS) -> kernel names.
POOL_PADDINGS = {"same": "same", "symmetric": "sym"}


def pool_op(kind, padding):
    """x -> 3x3 stride-2 ``kind`` ("max" or "avg") pooling with ``padding`` ("same" or "symmetric")."""
    if kind not in ("max", "avg") or padding not in POOL_PADDINGS:
        raise ValueError(f"no fast pooling for kind={kind!r}, padding={padding!r}")
    name = f"fast_{kind}pool3x3s2_{POOL_PADDINGS[padding]}"

    def out_hw(shape):
        if padding == "same":
            return (shape[2] + 1) // 2, (shape[3] + 1) // 2
        return _out_hw(shape, 2)

    def make():
        backward = _custom(name + "_bwd", out_shape=lambda x, dy: x, out_dtype=lambda x, dy: x)

        def bprop(x, out, dout):
            return (backward(x, dout),)

        return _custom(name + "_fwd", out_shape=lambda x: (x[0], x[1], *out_hw(x)), out_dtype=lambda x: x,
                       bprop=bprop)
    return _cached(("pool", kind, padding), make)


def global_avg_pool_op():
    """x (B, C, H, W) -> mean over H and W, (B, C)."""
    def make():
        backward = _custom("fast_gap_bwd", out_shape=lambda x, dy: x, out_dtype=lambda x, dy: x)

        def bprop(x, out, dout):
            return (backward(x, dout),)

        return _custom("fast_gap_fwd", out_shape=lambda x: (x[0], x[1]), out_dtype=lambda x: x, bprop=bprop)
    return _cached("gap", make)
