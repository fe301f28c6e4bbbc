"""3DGrid-VQGAN model: shapes for both presets, index round trips, discriminators, losses."""
import pytest
import torch

from baselines.common import count_parameters
from baselines.vqgan3d import (
    VQGAN3D,
    losses,
    paper_config,
    small_config,
)
from baselines.vqgan3d.discriminator import PatchGAN, build_discriminator, random_slices
from baselines.vqgan3d.train import synthetic_grids


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    return VQGAN3D(small_config())


def test_small_preset_shapes(small):
    cfg = small.cfg
    assert (cfg.input_size, cfg.n_codes, cfg.embedding_dim, cfg.downsample) == (32, 512, 64, 4)
    x = torch.stack(synthetic_grids(2, 32, seed=1))
    small.train()
    z_e = small.encode(x)
    assert z_e.shape == (2, 64, 8, 8, 8)
    z_q, idx, _ = small.quantize(z_e)
    assert z_q.shape == z_e.shape and idx.shape == (2, 8, 8, 8) and idx.dtype == torch.int64
    assert 0 <= int(idx.min()) and int(idx.max()) < 512
    x_hat, aux = small(x)
    assert x_hat.shape == x.shape
    assert aux["commitment_loss"].requires_grad
    e = small.embed(x)
    assert e.shape == (2, cfg.embed_dim) == (2, 512)
    assert small.embed(x, pooling="seed").shape == (2, 8 * 2 * 2 * 4)
    with pytest.raises(ValueError, match="pooling"):
        small.embed(x, pooling="max")
    # embed = block means of z_e: its grand mean equals the mean of z_e per channel
    small.eval()
    z = small.encode(x)
    assert torch.allclose(e.view(2, 64, 8).mean(-1), z.mean(dim=(2, 3, 4)), atol=1e-5)


def test_non_cubic_grids_and_bad_shapes(small):
    small.eval()
    x = torch.rand(1, 1, 16, 24, 32)
    with torch.no_grad():
        x_hat, aux = small(x)
    assert x_hat.shape == x.shape and aux["indices"].shape == (1, 4, 6, 8)
    with pytest.raises(ValueError, match="divisible by 4"):
        small.encode(torch.rand(1, 1, 16, 16, 18))


def test_paper_preset_encoder_on_128_cube_and_decoder_factor():
    cfg = paper_config()
    assert (cfg.input_size, cfg.n_codes, cfg.embedding_dim, cfg.n_hiddens) == (128, 16384, 256, 16)
    torch.manual_seed(0)
    m = VQGAN3D(cfg).eval()
    assert m.quantizer.embeddings.shape == (16384, 256)
    # encoder widths 1 -> 16 -> 32 -> 64 -> 256 (released code)
    enc = m.encoder
    assert enc.conv_first.conv.out_channels == 16
    assert [s[0].conv.out_channels for s in enc.stages] == [32, 64]
    assert enc.pre_vq.conv.out_channels == 256 and enc.pre_vq.conv.kernel_size == (1, 1, 1)
    with torch.no_grad():
        # full 128^3 through the encoder (about 2 s on one CPU core): the seed's [256, 32^3]
        x128 = torch.rand(1, 1, 128, 128, 128)
        z = m.encode(x128)
        assert z.shape == (1, 256, 32, 32, 32)
        m.encode = lambda _: z  # reuse this latent for the two embeddings
        # "blocks": mean of each channel over the eight 16^3 blocks
        e = m.embed(x128)
        assert e.shape == (1, 2048)
        assert torch.allclose(e.view(256, 8)[:, 0], z[0, :, :16, :16, :16].mean(dim=(1, 2, 3)),
                              atol=1e-5)
        # "seed": the released feature_extraction, AvgPool3d(16) on the channels-last latent
        ref = torch.nn.AvgPool3d(16)(z.permute(0, 2, 3, 4, 1)).reshape(1, -1)
        assert torch.allclose(m.embed(x128, pooling="seed"), ref, atol=1e-6)
        assert ref.shape == (1, 2048)
        del m.encode
        # the decoder at 128^3 takes ~25 s on one core: check the x4 factor on a 32^3 input
        x = torch.rand(1, 1, 32, 32, 32)
        assert m.embed(x).shape == (1, 2048)  # 256 channels x 2^3 pooled blocks
        idx = m.encode_indices(x)
        assert idx.shape == (1, 8, 8, 8)
        assert m.decode_indices(idx).shape == (1, 1, 32, 32, 32)


def _expected_params(h, latent, dec_res=2, cin=1):
    """Parameter count of the released layout, written out layer by layer."""
    conv = lambda a, b, k: a * b * k ** 3 + b
    convt = conv
    gn = lambda c: 2 * c
    res = lambda c: 2 * gn(c) + 2 * conv(c, c, 3)
    enc = conv(cin, h, 3) + conv(h, 2 * h, 4) + res(2 * h) + conv(2 * h, 4 * h, 4) + res(4 * h)
    enc += gn(4 * h) + conv(4 * h, latent, 1)
    dec = conv(latent, 4 * h, 1) + gn(4 * h)
    dec += convt(4 * h, 4 * h, 4) + dec_res * res(4 * h)
    dec += convt(4 * h, 2 * h, 4) + dec_res * res(2 * h) + conv(2 * h, cin, 3)
    return enc, dec


def test_parameter_counts():
    for cfg in (small_config(), paper_config()):
        m = VQGAN3D(cfg)
        enc, dec = _expected_params(cfg.n_hiddens, cfg.embedding_dim)
        assert count_parameters(m.encoder) == enc
        assert count_parameters(m.decoder) == dec
        # the codebook is an EMA buffer, not a parameter
        assert count_parameters(m) == enc + dec
        assert not any(p.data_ptr() == m.quantizer.embeddings.data_ptr() for p in m.parameters())


def test_index_round_trip_is_deterministic_and_matches_forward(small):
    x = torch.stack(synthetic_grids(2, 32, seed=3))
    small.train()
    small(x)  # one training call: codebook initialized from data + EMA update
    small.eval()
    with torch.no_grad():
        idx1 = small.encode_indices(x)
        idx2 = small.encode_indices(x)
        assert torch.equal(idx1, idx2)
        a = small.decode(small.quantizer.lookup(idx1))
        b = small.decode(small.quantizer.lookup(idx2))
        assert torch.equal(a, b)
        x_hat, aux = small(x)
        assert torch.equal(aux["indices"], idx1)
        assert torch.equal(small.decode_indices(idx1), x_hat)


def test_encode_indices_never_updates_codebook(small):
    small.train()
    before = small.quantizer.embeddings.clone()
    small.encode_indices(torch.rand(1, 1, 16, 16, 16))
    assert torch.equal(before, small.quantizer.embeddings)


def test_random_slices_follow_generator_and_pick_real_slices():
    x = torch.rand(3, 1, 8, 8, 8)
    y = -x
    g = torch.Generator().manual_seed(5)
    rs, fs, choice = random_slices(x, y, g)
    assert rs.shape == (3, 1, 8, 8) and torch.equal(fs, -rs)
    for i in range(3):
        a, j = choice[i].tolist()
        assert torch.equal(rs[i], x[i].select(a + 1, j))
    rs2, _, choice2 = random_slices(x, y, torch.Generator().manual_seed(5))
    assert torch.equal(choice, choice2) and torch.equal(rs, rs2)
    with pytest.raises(ValueError, match="cubic"):
        random_slices(torch.rand(1, 1, 8, 8, 4), torch.rand(1, 1, 8, 8, 4), g)


def test_patchgan_2d_and_3d():
    d2 = build_discriminator(small_config())
    assert d2.dims == 2
    logits, feats = d2(torch.rand(2, 1, 32, 32))
    # 32 -> 17 -> 9 -> 5 (stride 2, k4, p2) -> 6 -> 7 (stride 1)
    assert logits.shape == (2, 1, 7, 7) and len(feats) == 3 + 2 and feats[-1] is logits
    d3 = build_discriminator(small_config(disc_type="3d"))
    logits, feats = d3(torch.rand(1, 1, 16, 16, 16))
    assert logits.dim() == 5 and len(feats) == 5
    # released widths: 64, 128, 256, 512 then 1 logit channel
    d = PatchGAN(1, 64, 3, dims=2)
    assert [l[0].out_channels for l in d.layers] == [64, 128, 256, 512, 1]
    with pytest.raises(ValueError):
        build_discriminator(small_config(disc_type="4d"))


def test_hinge_and_feature_matching_values():
    real = torch.tensor([2.0, 0.5])
    fake = torch.tensor([-2.0, 0.5])
    # 0.5 * (mean(0, 0.5) + mean(0, 1.5)) = 0.5
    assert losses.hinge_d_loss(real, fake).item() == pytest.approx(0.5)
    assert losses.hinge_g_loss(fake).item() == pytest.approx(0.75)
    f_fake = [torch.ones(2, 2), torch.zeros(3), torch.tensor([9.0])]
    f_real = [torch.zeros(2, 2), torch.full((3,), 2.0), torch.tensor([0.0])]
    # layers except the logits, weight 4 / (n_layers + 1) with n_layers = 1: 2 * (1 + 2)
    assert losses.feature_matching_loss(f_fake, f_real).item() == pytest.approx(6.0)


def test_perceptual_loss_off_without_weights(monkeypatch, capsys):
    monkeypatch.delenv(losses.VGG_ENV, raising=False)
    monkeypatch.setitem(losses._WARNED, "done", False)
    assert losses.load_vgg_perceptual() is None
    err = capsys.readouterr().err
    assert "perceptual (LPIPS) loss OFF" in err and "DENSEGEN_VGG16_WEIGHTS" in err
    assert losses.load_vgg_perceptual() is None  # second time: silent
    assert capsys.readouterr().err == ""


def test_perceptual_loss_from_local_weights(tmp_path, monkeypatch):
    from torchvision.models import vgg

    torch.manual_seed(0)
    feats = vgg.make_layers(vgg.cfgs["D"])
    path = tmp_path / "vgg16.pth"
    torch.save({f"features.{k}": v for k, v in feats.state_dict().items()}, path)
    monkeypatch.setenv(losses.VGG_ENV, str(path))
    p = losses.load_vgg_perceptual()
    assert p is not None
    a = torch.rand(2, 1, 32, 32)
    assert p(a, a).item() == 0.0
    d1 = p(a, a + 0.05 * torch.randn_like(a)).item()
    d2 = p(a, torch.rand(2, 1, 32, 32)).item()
    assert 0.0 < d1 < d2
    assert not any(q.requires_grad for q in p.parameters())
