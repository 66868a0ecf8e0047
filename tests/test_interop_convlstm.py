"""ConvLSTM interop: ndrplz-style PyTorch state dicts and Keras ConvLSTM2D weights."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_close
from naive import sigmoid

from numlstm import LSTM, ConvLSTM
from numlstm.interop import convlstm_from_keras, convlstm_from_torch, convlstm_to_keras, convlstm_to_torch

B, T, CIN, C, HW = 2, 3, 2, 3, 5

# name -> (num_layers, kernel, bias)
TORCH_CONFIGS = {
    "one_layer": (1, (3, 3), True),
    "two_layers": (2, (3, 3), True),
    "rect_kernel": (2, (1, 5), True),
    "no_bias": (2, (3, 3), False),
}

# name -> (num_layers, kernel, bias, stride, dilation)
KERAS_CONFIGS = {
    "one_layer": (1, (3, 3), True, 1, 1),
    "two_layers": (2, (3, 3), True, 1, 1),
    "even_kernel": (2, (2, 3), True, 1, 1),
    "stride2": (2, (3, 3), True, 2, 1),
    "dilation2": (1, (3, 3), True, 1, 2),
    "no_bias": (2, (3, 3), False, 1, 1),
}


def ndrplz_dict(rng, num_layers, kernel, bias, cin=CIN, hidden=C):
    sd = {}
    for k in range(num_layers):
        c_in_k = cin if k == 0 else hidden
        sd[f"cell_list.{k}.conv.weight"] = 0.5 * rng.standard_normal((4 * hidden, c_in_k + hidden, *kernel))
        if bias:
            sd[f"cell_list.{k}.conv.bias"] = 0.5 * rng.standard_normal(4 * hidden)
    return sd


def keras_lists(rng, num_layers, kernel, bias, cin=CIN, filters=C):
    out = []
    for k in range(num_layers):
        c_in_k = cin if k == 0 else filters
        lw = [
            0.5 * rng.standard_normal((*kernel, c_in_k, 4 * filters)),
            0.5 * rng.standard_normal((*kernel, filters, 4 * filters)),
        ]
        if bias:
            lw.append(0.5 * rng.standard_normal(4 * filters))
        out.append(lw)
    return out


def make_layer(rng, **kw) -> ConvLSTM:
    kw = {"kernel_size": 3, "dtype": np.float64, **kw}
    layer = ConvLSTM(CIN, C, seed=int(rng.integers(2**31)), **kw)
    for p in layer.params.values():
        p[...] = 0.5 * rng.standard_normal(p.shape)
    return layer


# -- PyTorch (ndrplz) layout ------------------------------------------------------------------------
@pytest.mark.parametrize("config", list(TORCH_CONFIGS))
def test_torch_dict_round_trip(rng, config):
    sd = ndrplz_dict(rng, *TORCH_CONFIGS[config])
    layer = convlstm_from_torch(sd, dtype=np.float64)
    num_layers, kernel, bias = TORCH_CONFIGS[config]
    assert (layer.in_channels, layer.hidden_channels, layer.kernel_size) == (CIN, C, kernel)
    assert (layer.num_layers, layer.bias) == (num_layers, bias)
    back = convlstm_to_torch(layer)
    assert set(back) == set(sd)
    for k, v in sd.items():
        np.testing.assert_array_equal(back[k], v, err_msg=k)


def test_torch_gate_reorder(rng):
    """Blocks i, f, o, g of the ndrplz conv become our i, f, g, o; x columns first, then h."""
    sd = ndrplz_dict(rng, 1, (3, 3), True)
    w, b = sd["cell_list.0.conv.weight"], sd["cell_list.0.conv.bias"]
    layer = convlstm_from_torch(sd, dtype=np.float64)
    p = layer.params
    for ours, theirs in enumerate([0, 1, 3, 2]):
        rows, src = slice(ours * C, (ours + 1) * C), slice(theirs * C, (theirs + 1) * C)
        np.testing.assert_array_equal(p["weight_x_l0"][rows], w[src, :CIN])
        np.testing.assert_array_equal(p["weight_h_l0"][rows], w[src, CIN:])
        np.testing.assert_array_equal(p["bias_l0"][rows], b[src])


@pytest.mark.parametrize("config", list(TORCH_CONFIGS))
def test_layer_to_torch_dict_and_back(rng, config):
    num_layers, kernel, bias = TORCH_CONFIGS[config]
    layer = make_layer(rng, kernel_size=kernel, num_layers=num_layers, bias=bias)
    back = convlstm_from_torch(convlstm_to_torch(layer), dtype=np.float64)
    assert set(back.params) == set(layer.params)
    for k, v in layer.params.items():
        np.testing.assert_array_equal(back.params[k], v, err_msg=k)


@pytest.mark.parametrize("prefix", ["cell_list.", "", "encoder.cell_list.", "model.convlstm."])
def test_torch_key_forms(rng, prefix):
    sd = ndrplz_dict(rng, 2, (3, 3), True)
    ref = convlstm_from_torch(sd, dtype=np.float64)
    renamed = {prefix + k[len("cell_list.") :]: v for k, v in sd.items()}
    layer = convlstm_from_torch(renamed, dtype=np.float64)
    for k, v in ref.params.items():
        np.testing.assert_array_equal(layer.params[k], v, err_msg=k)


def test_torch_single_cell_keys(rng):
    """A lone ConvLSTMCell's state dict ('conv.weight', 'conv.bias') is one layer."""
    sd = ndrplz_dict(rng, 1, (3, 3), True)
    cell = {k.replace("cell_list.0.", ""): v for k, v in sd.items()}
    layer = convlstm_from_torch(cell, dtype=np.float64)
    assert layer.num_layers == 1
    np.testing.assert_array_equal(convlstm_to_torch(layer)["cell_list.0.conv.weight"], sd["cell_list.0.conv.weight"])


def test_torch_dtype_kernel_size_and_kwargs(rng):
    sd = ndrplz_dict(rng, 1, (3, 3), True)
    layer = convlstm_from_torch(sd, kernel_size=3, return_sequences=False, seed=4)
    assert layer.dtype == np.float32 and all(p.dtype == np.float32 for p in layer.params.values())
    assert layer.return_sequences is False and layer.seed == 4


def test_to_torch_returns_copies_and_grads(rng):
    layer = make_layer(rng, num_layers=2)
    sd = convlstm_to_torch(layer)
    sd["cell_list.0.conv.weight"][...] = 0.0
    assert np.abs(layer.params["weight_x_l0"]).max() > 0
    for g in layer.grads.values():
        g[...] = rng.standard_normal(g.shape)
    gd = convlstm_to_torch(layer, grads=True)
    back = convlstm_from_torch(gd, dtype=np.float64)
    for k, v in layer.grads.items():
        np.testing.assert_array_equal(back.params[k], v, err_msg=k)


def _ndrplz_model(torch, num_layers, kernel, bias, cin=CIN, hidden=C):
    """The ndrplz/ConvLSTM_pytorch cell: one Conv2d over cat([x, h]), split i, f, o, g, padding k//2."""
    nn = torch.nn

    class ConvLSTMCell(nn.Module):
        def __init__(self, input_dim):
            super().__init__()
            pad = (kernel[0] // 2, kernel[1] // 2)
            self.conv = nn.Conv2d(input_dim + hidden, 4 * hidden, kernel, padding=pad, bias=bias)

        def forward(self, x, state):
            h_cur, c_cur = state
            combined_conv = self.conv(torch.cat([x, h_cur], dim=1))
            cc_i, cc_f, cc_o, cc_g = torch.split(combined_conv, hidden, dim=1)
            i, f, o, g = torch.sigmoid(cc_i), torch.sigmoid(cc_f), torch.sigmoid(cc_o), torch.tanh(cc_g)
            c_next = f * c_cur + i * g
            return o * torch.tanh(c_next), c_next

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.cell_list = nn.ModuleList([ConvLSTMCell(cin if k == 0 else hidden) for k in range(num_layers)])

        def forward(self, x, h0, c0):  # x: (B, T, C, H, W), batch first
            hs, cs = [], []
            for k, cell in enumerate(self.cell_list):
                h, c = h0[k], c0[k]
                outs = []
                for t in range(x.shape[1]):
                    h, c = cell(x[:, t], (h, c))
                    outs.append(h)
                x = torch.stack(outs, dim=1)
                hs.append(h)
                cs.append(c)
            return x, torch.stack(hs), torch.stack(cs)

    return Net().double()


@pytest.mark.parametrize("config", list(TORCH_CONFIGS))
def test_ndrplz_model_matches(rng, config):
    torch = pytest.importorskip("torch")
    num_layers, kernel, bias = TORCH_CONFIGS[config]
    torch.manual_seed(int(rng.integers(2**31)))
    net = _ndrplz_model(torch, num_layers, kernel, bias)
    layer = convlstm_from_torch(net.state_dict(), dtype=np.float64)  # tensors, converted without a torch import
    x = rng.standard_normal((B, T, CIN, HW, HW))
    shape = (num_layers, B, C, HW, HW)
    h0, c0 = rng.standard_normal(shape), rng.standard_normal(shape)
    y = layer(x, state=(h0, c0))
    dy = rng.standard_normal(y.shape)
    layer.backward(dy)
    ty, thn, tcn = net(torch.from_numpy(x), torch.from_numpy(h0), torch.from_numpy(c0))
    (ty * torch.from_numpy(dy)).sum().backward()
    tol = 1e-10
    assert_close(y, ty.detach().numpy(), tol, "y")
    assert_close(layer.state[0], thn.detach().numpy(), tol, "h_n")
    assert_close(layer.state[1], tcn.detach().numpy(), tol, "c_n")
    grads = convlstm_to_torch(layer, grads=True)
    for name, p in net.named_parameters():
        assert_close(grads[name], p.grad.numpy(), tol, name)
    # and back: our parameters load into the torch module
    net.load_state_dict({k: torch.from_numpy(v) for k, v in convlstm_to_torch(layer).items()})


# -- Keras layout ---------------------------------------------------------------------------------
@pytest.mark.parametrize("config", list(KERAS_CONFIGS))
def test_keras_lists_round_trip(rng, config):
    num_layers, kernel, bias, stride, dilation = KERAS_CONFIGS[config]
    weights = keras_lists(rng, num_layers, kernel, bias)
    layer = convlstm_from_keras(weights, dtype=np.float64, stride=stride, dilation=dilation)
    assert (layer.in_channels, layer.hidden_channels, layer.kernel_size) == (CIN, C, kernel)
    assert (layer.num_layers, layer.bias, layer.stride, layer.dilation) == (num_layers, bias, (stride,) * 2, (dilation,) * 2)
    back = convlstm_to_keras(layer)
    assert len(back) == num_layers
    for k, (lw, lb) in enumerate(zip(weights, back, strict=True)):
        assert len(lw) == len(lb)
        for a, b in zip(lw, lb, strict=True):
            np.testing.assert_array_equal(b, a, err_msg=f"layer {k}")


@pytest.mark.parametrize("config", list(KERAS_CONFIGS))
def test_layer_to_keras_and_back(rng, config):
    num_layers, kernel, bias, stride, dilation = KERAS_CONFIGS[config]
    layer = make_layer(rng, kernel_size=kernel, num_layers=num_layers, bias=bias, stride=stride, dilation=dilation)
    back = convlstm_from_keras(convlstm_to_keras(layer), dtype=np.float64, stride=stride, dilation=dilation)
    for k, v in layer.params.items():
        np.testing.assert_array_equal(back.params[k], v, err_msg=k)


def test_keras_kernel_layout(rng):
    weights = keras_lists(rng, 1, (2, 3), True)
    layer = convlstm_from_keras(weights, dtype=np.float64)
    np.testing.assert_array_equal(layer.params["weight_x_l0"], weights[0][0].transpose(3, 2, 0, 1))
    np.testing.assert_array_equal(layer.params["weight_h_l0"], weights[0][1].transpose(3, 2, 0, 1))
    np.testing.assert_array_equal(layer.params["bias_l0"], weights[0][2])


def test_keras_single_layer_list_or_tuple(rng):
    (lw,) = keras_lists(rng, 1, (3, 3), True)
    a = convlstm_from_keras(lw, dtype=np.float64)
    b = convlstm_from_keras(tuple(lw), dtype=np.float64, return_sequences=False)
    assert a.num_layers == b.num_layers == 1 and b.return_sequences is False
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
    assert convlstm_from_keras(lw).dtype == np.float32


def _same_conv_nhwc(x, kernel, stride, dilation):
    """TensorFlow conv2d, padding 'SAME', channels last: x (B, H, W, Ci), kernel (kh, kw, Ci, Co)."""
    _, H, W, _ = x.shape
    kh, kw = kernel.shape[:2]

    def pads(size, k):
        out = -(-size // stride)
        total = max((out - 1) * stride + dilation * (k - 1) + 1 - size, 0)
        return out, total // 2, total - total // 2

    ho, pt, pb = pads(H, kh)
    wo, pl, pr = pads(W, kw)
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    out = np.zeros((x.shape[0], ho, wo, kernel.shape[3]))
    for dy in range(kh):
        for dx in range(kw):
            ys = slice(dy * dilation, dy * dilation + (ho - 1) * stride + 1, stride)
            xs = slice(dx * dilation, dx * dilation + (wo - 1) * stride + 1, stride)
            out += xp[:, ys, xs, :] @ kernel[dy, dx]
    return out


def _keras_convlstm2d(weights, x, stride, dilation):
    """Stacked Keras ConvLSTM2D (padding='same', return_sequences=True, channels last), zero initial state.

    x: (B, T, H, W, C_in). Each layer: z = conv(x_t, kernel, strides, dilation) + bias + conv(h, recurrent_kernel)
    (stride 1, 'same'); i, f, c, o = split(z, 4, axis=-1)."""
    for k, lw in enumerate(weights):
        kernel, rec = lw[0], lw[1]
        F = rec.shape[2]
        s = stride if k == 0 else 1
        h = c = None
        outs = []
        for t in range(x.shape[1]):
            z = _same_conv_nhwc(x[:, t], kernel, s, dilation)
            if len(lw) == 3:
                z = z + lw[2]
            if h is None:
                h = c = np.zeros(z.shape[:3] + (F,))
            z = z + _same_conv_nhwc(h, rec, 1, 1)
            i, f, g, o = np.split(z, 4, axis=-1)
            c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
            h = sigmoid(o) * np.tanh(c)
            outs.append(h)
        x = np.stack(outs, axis=1)
    return x


@pytest.mark.parametrize("config", list(KERAS_CONFIGS))
def test_keras_numpy_model_matches(rng, config):
    num_layers, kernel, bias, stride, dilation = KERAS_CONFIGS[config]
    weights = keras_lists(rng, num_layers, kernel, bias)
    layer = convlstm_from_keras(weights, dtype=np.float64, stride=stride, dilation=dilation)
    x = rng.standard_normal((B, T, HW, HW, CIN))  # Keras: channels last
    ref = _keras_convlstm2d(weights, x, stride, dilation)
    y = layer(np.ascontiguousarray(x.transpose(0, 1, 4, 2, 3)))
    assert_close(y, ref.transpose(0, 1, 4, 2, 3), 1e-10, "y")


# -- bad input ------------------------------------------------------------------------------------
def test_from_torch_not_a_mapping_or_empty():
    with pytest.raises(TypeError, match=r"state_dict: expected a mapping"):
        convlstm_from_torch([np.zeros((12, 5, 3, 3))])
    with pytest.raises(ValueError, match=r"empty mapping"):
        convlstm_from_torch({})


@pytest.mark.parametrize(
    "key",
    ["cell_list.0.conv.weight_ih", "cell_list.0.Wci", "cell_list.0.peephole_i", "cell_list.conv.weight", "weight"],
)
def test_from_torch_unexpected_key(rng, key):
    sd = ndrplz_dict(rng, 1, (3, 3), True)
    sd[key] = np.zeros(3)
    with pytest.raises(ValueError, match=r"unexpected key|layer index"):
        convlstm_from_torch(sd)


def test_from_torch_missing_bias_in_one_layer(rng):
    sd = ndrplz_dict(rng, 2, (3, 3), True)
    del sd["cell_list.1.conv.bias"]
    with pytest.raises(ValueError, match=r"bias present for layers \[0\] but not for layers \[1\]"):
        convlstm_from_torch(sd)


def test_from_torch_missing_weight(rng):
    sd = ndrplz_dict(rng, 3, (3, 3), True)
    del sd["cell_list.1.conv.weight"]
    with pytest.raises(ValueError, match=r"missing conv.weight of layer\(s\) \[1\]"):
        convlstm_from_torch(sd)
    with pytest.raises(ValueError, match=r"missing conv.weight of layer\(s\) \[0\]"):
        convlstm_from_torch({"cell_list.0.conv.bias": np.zeros(12)})


def test_from_torch_duplicate_and_mixed_prefixes(rng):
    sd = ndrplz_dict(rng, 1, (3, 3), True)
    dup = {**sd, "0.conv.weight": sd["cell_list.0.conv.weight"]}
    with pytest.raises(ValueError, match=r"appears twice"):
        convlstm_from_torch(dup)
    mixed = {
        "enc.cell_list.0.conv.weight": sd["cell_list.0.conv.weight"],
        "dec.cell_list.1.conv.weight": sd["cell_list.0.conv.weight"],
    }
    with pytest.raises(ValueError, match=r"more than one ConvLSTM"):
        convlstm_from_torch(mixed)


@pytest.mark.parametrize(
    "key, shape, match",
    [
        ("cell_list.0.conv.weight", (12, 5, 3), r"expected shape \(4C, C_in \+ C, kh, kw\)"),
        ("cell_list.0.conv.weight", (10, 5, 3, 3), r"expected shape \(4C, C_in \+ C, kh, kw\)"),
        ("cell_list.0.conv.weight", (12, 3, 3, 3), r"leave none for x"),
        ("cell_list.0.conv.bias", (8,), r"layer 0 conv.bias: expected shape \(12,\)"),
        ("cell_list.1.conv.weight", (12, 5, 3, 3), r"layer 1 conv.weight: expected shape \(12, 6, 3, 3\)"),
        ("cell_list.1.conv.weight", (16, 8, 3, 3), r"one hidden size and kernel for all layers"),
        ("cell_list.1.conv.weight", (12, 6, 5, 5), r"layer 1 conv.weight: expected shape \(12, 6, 3, 3\)"),
    ],
)
def test_from_torch_wrong_shapes(rng, key, shape, match):
    sd = ndrplz_dict(rng, 2, (3, 3), True)
    sd[key] = np.zeros(shape)
    with pytest.raises(ValueError, match=match):
        convlstm_from_torch(sd)


@pytest.mark.parametrize("kernel", [(2, 2), (3, 4)])
def test_from_torch_even_kernel(rng, kernel):
    sd = ndrplz_dict(rng, 1, kernel, True)
    with pytest.raises(ValueError, match=r"even side; the ndrplz ConvLSTM pads k//2"):
        convlstm_from_torch(sd)


def test_from_torch_kernel_size_mismatch_and_geometry(rng):
    sd = ndrplz_dict(rng, 1, (3, 3), True)
    with pytest.raises(ValueError, match=r"kernel_size: 5 differs from the weights' kernel 3x3"):
        convlstm_from_torch(sd, kernel_size=5)
    with pytest.raises(ValueError, match=r"stride=2.*stride 1 and dilation 1 only"):
        convlstm_from_torch(sd, stride=2)
    with pytest.raises(ValueError, match=r"dilation=\(1, 2\)"):
        convlstm_from_torch(sd, dilation=(1, 2))


def test_from_torch_integer_arrays(rng):
    sd = ndrplz_dict(rng, 1, (3, 3), True)
    sd["cell_list.0.conv.weight"] = sd["cell_list.0.conv.weight"].astype(np.int64)
    with pytest.raises(TypeError, match=r"floating-point"):
        convlstm_from_torch(sd)


def test_to_torch_rejects_what_ndrplz_cannot_express(rng):
    with pytest.raises(ValueError, match=r"even side; the ndrplz ConvLSTM pads k//2"):
        convlstm_to_torch(make_layer(rng, kernel_size=(3, 2)))
    with pytest.raises(ValueError, match=r"stride=\(2, 2\)"):
        convlstm_to_torch(make_layer(rng, stride=2))
    with pytest.raises(ValueError, match=r"dilation=\(2, 2\)"):
        convlstm_to_torch(make_layer(rng, dilation=2))


def _bidirectional(layer):
    for k in list(layer.params):
        layer.params[k + "_reverse"] = layer.params[k].copy()
    return layer


def _peephole(layer):
    for g in "ifo":
        layer.params[f"peephole_{g}_l0"] = np.zeros((C, HW, HW))
    return layer


@pytest.mark.parametrize("fn", [convlstm_to_torch, convlstm_to_keras])
@pytest.mark.parametrize("variant, match", [(_bidirectional, r"bidirectional"), (_peephole, r"peephole")])
def test_export_rejects_peephole_and_bidirectional(rng, fn, variant, match):
    layer = variant(make_layer(rng))
    with pytest.raises(ValueError, match=match):
        fn(layer)


@pytest.mark.parametrize("attr", ["bidirectional", "peephole", "peepholes"])
@pytest.mark.parametrize("fn", [convlstm_to_torch, convlstm_to_keras])
def test_export_rejects_flagged_layers(rng, fn, attr):
    layer = make_layer(rng)
    setattr(layer, attr, True)
    with pytest.raises(ValueError, match=attr[:8]):
        fn(layer)


@pytest.mark.parametrize("fn", [convlstm_to_torch, convlstm_to_keras])
def test_export_needs_a_convlstm(fn):
    with pytest.raises(TypeError, match=r"expected a numlstm.ConvLSTM, got LSTM"):
        fn(LSTM(3, 2))


@pytest.mark.parametrize("bad", [None, [], np.zeros((3, 3, 2, 12)), "kernel"])
def test_from_keras_not_a_list(bad):
    with pytest.raises(TypeError, match=r"weights: expected a non-empty list"):
        convlstm_from_keras(bad)


def test_from_keras_wrong_list_length(rng):
    lw = keras_lists(rng, 1, (3, 3), True)[0]
    with pytest.raises(ValueError, match=r"weights\[0\]: expected 2 or 3 arrays"):
        convlstm_from_keras([lw[0]])
    with pytest.raises(ValueError, match=r"weights\[1\]: expected 2 or 3 arrays"):
        convlstm_from_keras([lw, lw + lw])


def test_from_keras_mixed_bias(rng):
    weights = keras_lists(rng, 2, (3, 3), True)
    weights[1] = weights[1][:2]
    with pytest.raises(ValueError, match=r"every layer must have a bias or none"):
        convlstm_from_keras(weights)


@pytest.mark.parametrize(
    "layer, index, shape, match",
    [
        (0, 1, (3, 3, 3, 8), r"recurrent_kernel: expected shape \(kh, kw, F, 4F\)"),
        (0, 1, (3, 3, 12), r"recurrent_kernel: expected shape \(kh, kw, F, 4F\)"),
        (0, 0, (3, 3, 2, 8), r"weights\[0\] kernel: expected shape \(3, 3, C_in, 12\)"),
        (0, 0, (2, 3, 2, 12), r"weights\[0\] kernel: expected shape \(3, 3, C_in, 12\)"),
        (0, 2, (8,), r"weights\[0\] bias: expected shape \(12,\)"),
        (1, 0, (3, 3, 2, 12), r"weights\[1\] kernel: expected shape \(3, 3, 3, 12\)"),
        (1, 1, (3, 3, 4, 16), r"one filter count and kernel for all layers"),
        (1, 1, (5, 5, 3, 12), r"one filter count and kernel for all layers"),
    ],
)
def test_from_keras_wrong_shapes(rng, layer, index, shape, match):
    weights = keras_lists(rng, 2, (3, 3), True)
    weights[layer][index] = np.zeros(shape)
    with pytest.raises(ValueError, match=match):
        convlstm_from_keras(weights)


def test_from_keras_integer_arrays(rng):
    weights = keras_lists(rng, 1, (3, 3), True)
    weights[0][2] = np.zeros(12, np.int32)
    with pytest.raises(TypeError, match=r"bias: expected a floating-point array"):
        convlstm_from_keras(weights)


@pytest.mark.parametrize("fn", [convlstm_to_torch, convlstm_to_keras])
@pytest.mark.parametrize(
    "kw, match", [({"peephole": True, "frame_size": (HW, HW)}, r"peephole"), ({"bidirectional": True}, r"bidirectional")]
)
def test_export_rejects_real_peephole_and_bidirectional_layers(fn, kw, match):
    try:
        layer = ConvLSTM(CIN, C, 3, **kw)
    except TypeError:
        pytest.skip(f"this ConvLSTM has no {sorted(kw)} options yet")
    with pytest.raises(ValueError, match=match):
        fn(layer)
