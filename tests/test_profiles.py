"""Profiles: named sets of trainer defaults, overrides, validation; TrainConfig resolution."""
from __future__ import annotations

import json

import pytest

from vldlib.train.profiles import PROFILES, apply_overrides, profile_config
from vldlib.train.config import FEWSHOT_DEFAULTS, SMALL_DATASET_MAX_TRAIN, TrainConfig, resolve_optim


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_every_profile_is_a_complete_valid_config(name):
    cfg = profile_config(name)
    assert set(cfg) == set(TrainConfig().to_dict())
    json.dumps(cfg, allow_nan=False)
    if name == "paper":  # the data root is the user's: checked when training starts
        with pytest.raises(ValueError, match="root"):
            TrainConfig.from_dict(cfg).validate()
        TrainConfig.from_dict(profile_config(name, **{"dataset_options.root": "/data/cub"})).validate()
    else:
        TrainConfig.from_dict(cfg).validate()


def test_profile_contents_follow_the_paper_and_the_design():
    off, paper, smoke = (profile_config(p) for p in ("offline", "paper", "smoke"))
    assert off["dataset"] == "fashion-mnist" and off["teacher"] == "conse" and off["student"] == "small"
    assert off["device"] == "cpu" and off["fewshot"]["shots"] == 5
    assert paper["dataset"] == "official" and paper["student"] == "resnet18"
    assert paper["teacher"] == "openclip"
    assert paper["teacher_options"] == {"model": "ViT-L-14", "pretrained": "openai"}
    assert paper["batch_size"] == 128 and paper["lr"] == 0.05 and paper["optimizer"] == "sgd"
    assert paper["k"] == 256 and paper["filter"] is True and paper["last_n"] == 5
    assert paper["epochs"] == 90 and paper["repeat_epochs"] == "auto" and paper["device"] == "auto"
    assert paper["weights"] == {"cls": 1.0, "mse": 1.0, "im_cst": 1.0, "vlprox": 1.0}
    assert paper["fewshot"]["shots"] == 5
    assert smoke["epochs"] <= 3 and smoke["dataset_options"]["per_class"] <= 50
    assert smoke["epochs"] < off["epochs"]


@pytest.mark.parametrize("native", [True, False])
def test_offline_precision_is_the_fast_one_on_this_cpu_and_explicit_in_the_config(native):
    """The offline profile's ``precision="auto"`` becomes bf16 where the CPU computes bf16 natively and
    fp32 where it would be emulated (about 10x slower): resolved when the config is built, so the two
    hash apart and a stored run names the precision it trained in. An explicit value always wins."""
    from unittest import mock

    from vldlib.train.config import config_hash

    with mock.patch("vldlib.device.cpu_bf16_native", return_value=native):
        cfg = profile_config("offline")
        assert cfg["precision"] == ("bf16" if native else "fp32")
        assert profile_config("offline", precision="auto")["precision"] == cfg["precision"]
        for explicit in ("fp32", "bf16"):
            assert profile_config("offline", precision=explicit)["precision"] == explicit
        assert profile_config("smoke")["precision"] is None  # the amp rule: fp32 on a CPU
        # on CUDA bf16, whether or not this machine has a GPU (configs are built and hashed anywhere)
        assert profile_config("offline", device="cuda")["precision"] == "bf16"
        other = profile_config("offline", precision="fp32" if native else "bf16")
    assert config_hash(cfg) != config_hash(other)
    with pytest.raises(ValueError, match="'auto' is resolved by profile_config"):
        TrainConfig.from_dict({**cfg, "precision": "auto"}).validate()


def test_paper_epochs_and_fewshot_resolve_per_dataset_size():
    cfg = TrainConfig.from_dict(profile_config("paper", **{"dataset_options.root": "/d"}))
    small = resolve_optim(cfg, 4122)  # CUB X_train
    large = resolve_optim(cfg, 35700)  # Food-101 X_train
    assert small["repeat_epochs"] == 5 and large["repeat_epochs"] == 1  # 450 / 90 passes
    assert small["fewshot"]["epochs"] == 100 and large["fewshot"]["epochs"] == 20
    assert small["fewshot"]["lr"] == 0.003 and small["fewshot"]["optimizer"] == "sgd"
    assert small["schedule"] == "step" and small["lr"] == 0.05 and small["weight_decay"] == 1e-4
    assert resolve_optim(cfg, SMALL_DATASET_MAX_TRAIN)["repeat_epochs"] == 1


def test_vit_student_gets_adamw_onecycle():
    cfg = TrainConfig.from_dict({"student": "vit_b_32", "fewshot": {"shots": 5}})
    r = resolve_optim(cfg, 3000)
    assert (r["optimizer"], r["schedule"], r["lr"], r["weight_decay"]) == ("adamw", "onecycle", 2e-4, 0.01)
    assert r["fewshot"]["lr"] == 1e-4 and r["fewshot"]["optimizer"] == "adamw"
    cnn = resolve_optim(TrainConfig.from_dict({"student": "resnet18"}), 3000)
    assert (cnn["optimizer"], cnn["schedule"], cnn["lr"]) == ("sgd", "step", 0.05)


def test_overrides_merge_options_and_replace_the_rest():
    base = PROFILES["offline"]
    cfg = profile_config("offline", dataset_options={"split_seed": 1}, weights={"cls": 1.0}, epochs=3)
    assert cfg["dataset_options"] == {**base["dataset_options"], "split_seed": 1}
    assert cfg["weights"] == {"cls": 1.0} and cfg["epochs"] == 3
    dotted = profile_config("offline", **{"dataset_options.split_seed": 1, "fewshot.epochs": 7})
    assert dotted["dataset_options"] == cfg["dataset_options"]
    # few-shot options are a typed sub-config: every option, the given ones set
    assert dotted["fewshot"] == {**FEWSHOT_DEFAULTS, **base["fewshot"], "epochs": 7}
    assert profile_config("offline", fewshot=None)["fewshot"] is None
    assert profile_config("offline", fewshot=None, **{"fewshot.shots": 3})["fewshot"] == {**FEWSHOT_DEFAULTS, "shots": 3}
    # another dataset / student starts from empty options, then merges the given ones
    other = profile_config("offline", dataset="official", dataset_options={"root": "/d"})
    assert other["dataset_options"] == {"root": "/d"}
    assert profile_config("offline", student="resnet18")["student_options"] == {}
    # profiles themselves are never mutated
    assert PROFILES["offline"] == base and "split_seed" not in base["dataset_options"]


def test_unknown_profile_or_key_lists_the_valid_ones():
    with pytest.raises(ValueError, match="valid profiles: offline, paper, smoke"):
        profile_config("laptop")
    with pytest.raises(ValueError, match=r"unknown config key 'epoch'.*'epochs'"):
        profile_config("offline", epoch=3)
    with pytest.raises(ValueError, match="not a dict field"):
        profile_config("offline", **{"epochs.x": 3})
    with pytest.raises(ValueError, match="unknown loss name"):
        profile_config("smoke", weights={"kl": 1.0})
    with pytest.raises(ValueError, match="unknown student"):
        profile_config("smoke", student="resnet101")
    with pytest.raises(ValueError, match="last_n"):
        profile_config("smoke", epochs=1)
    with pytest.raises(ValueError, match="unknown config key"):
        apply_overrides(PROFILES["smoke"], {"bogus.x": 1})


def test_config_roundtrip_and_field_errors():
    cfg = TrainConfig.from_dict(profile_config("smoke"))
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="dict or TrainConfig"):
        TrainConfig.from_dict([("epochs", 3)])
    for bad, match in [({"tau": 0}, "tau"), ({"momentum": 1.0}, "momentum"),
                       ({"repeat_epochs": 0}, "repeat_epochs"), ({"template": "a photo"}, "{name}"),
                       ({"lr": -1.0}, "lr"), ({"eval_epochs": "some"}, "eval_epochs"),
                       ({"text_mode": "mean"}, "text_mode"), ({"filter": "yes"}, "filter"),
                       ({"dataset_options": {"x": {1, 2}}}, "JSON-serialisable"),
                       ({"fewshot": {"shots": 0}}, "fewshot.shots")]:
        with pytest.raises(ValueError, match=match):
            TrainConfig.from_dict({**cfg.to_dict(), **bad}).validate()
