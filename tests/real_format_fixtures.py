"""Write a small MONAI bundle and a small nnU-Net v2 results folder, in the real formats, without downloads.

The MONAI bundle follows the model zoo's ``spleen_ct_segmentation`` bundle
(``configs/inference.json``: ``imports``, ``network_def``, ``preprocessing``
Compose of LoadImaged, EnsureChannelFirstd, Orientationd, Spacingd,
ScaleIntensityRanged, EnsureTyped; a ``SlidingWindowInferer``; the
evaluator, postprocessing, checkpoint loader and ``$`` expressions that a
bundle runner evaluates), with ``configs/metadata.json``'s
``network_data_format`` and ``models/model.pt`` holding the state dict. Its
``scripts/`` package would leave a marker file if anything imported it.

The nnU-Net folder follows what ``nnUNetv2_train`` writes: ``dataset.json``,
``plans.json`` (``ExperimentPlanner``'s keys: ``transpose_forward``,
``configurations`` with ``patch_size``, ``spacing``,
``normalization_schemes``, ``architecture`` with ``network_class_name``,
``arch_kwargs`` and ``_kw_requires_import``, and
``foreground_intensity_properties_per_channel``) and
``fold_N/checkpoint_final.pth``, the trainer's checkpoint dict
(``network_weights``, ``optimizer_state``, ``grad_scaler_state``,
``logging`` with numpy scalars, ``_best_ema``, ``current_epoch``,
``init_args``, ``trainer_name``, ``inference_allowed_mirroring_axes``).

Weights are random (seeded), with BatchNorm statistics and InstanceNorm
affines moved off their defaults so that normalisation layers matter.

Run ``python -m tests.real_format_fixtures OUT_DIR`` to write both.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

#: The bundle's network: a MONAI UNet, small enough for unit tests.
BUNDLE_NETWORK_DEF: dict[str, Any] = {
    "_target_": "UNet",
    "spatial_dims": 3,
    "in_channels": 1,
    "out_channels": 2,
    "channels": [4, 8, 16],
    "strides": [2, 2],
    "num_res_units": 1,
    "norm": "batch",
}
BUNDLE_ROI = [24, 24, 16]  # MONAI's (x, y, z) order
BUNDLE_PIXDIM = [1.4, 1.4, 3.0]
BUNDLE_HU_RANGE = (-57, 164)


def _perturb_norms(net: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (torch.nn.modules.batchnorm._BatchNorm, torch.nn.modules.instancenorm._InstanceNorm)):
                if m.weight is not None:
                    m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=g))
                    m.bias.copy_(0.3 * torch.randn(m.bias.shape, generator=g))
                if getattr(m, "running_mean", None) is not None:
                    m.running_mean.copy_(0.2 * torch.randn(m.running_mean.shape, generator=g))
                    m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))


def bundle_inference_config(network_def: dict[str, Any] | None = None, **overrides: Any) -> dict[str, Any]:
    """An ``inference.json`` in the model zoo's layout."""
    config: dict[str, Any] = {
        "imports": ["$import glob", "$import numpy", "$import os", "$import scripts"],
        "bundle_root": ".",
        "image_key": "image",
        "output_dir": "$@bundle_root + '/eval'",
        "output_ext": ".nii.gz",
        "output_dtype": "$numpy.float32",
        "output_postfix": "trans",
        "separate_folder": True,
        "load_pretrain": True,
        "dataset_dir": "/workspace/data/SyntheticCT",
        "datalist": "$list(sorted(glob.glob(@dataset_dir + '/imagesTs/*.nii.gz')))",
        "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
        "num_classes": 2,
        "network_def": network_def or {**BUNDLE_NETWORK_DEF, "out_channels": "@num_classes"},
        "network": "$@network_def.to(@device)",
        "preprocessing": {
            "_target_": "Compose",
            "transforms": [
                {"_target_": "LoadImaged", "keys": "@image_key"},
                {"_target_": "EnsureChannelFirstd", "keys": "@image_key"},
                {"_target_": "Orientationd", "keys": "@image_key", "axcodes": "RAS"},
                {"_target_": "Spacingd", "keys": "@image_key", "pixdim": BUNDLE_PIXDIM, "mode": "bilinear"},
                {"_target_": "ScaleIntensityRanged", "keys": "@image_key", "a_min": BUNDLE_HU_RANGE[0],
                 "a_max": BUNDLE_HU_RANGE[1], "b_min": 0, "b_max": 1, "clip": True},
                {"_target_": "EnsureTyped", "keys": "@image_key"},
            ],
        },
        "dataset": {"_target_": "Dataset", "data": "$[{'image': i} for i in @datalist]", "transform": "@preprocessing"},
        "dataloader": {"_target_": "DataLoader", "dataset": "@dataset", "batch_size": 1, "shuffle": False, "num_workers": 4},
        "inferer": {"_target_": "SlidingWindowInferer", "roi_size": BUNDLE_ROI, "sw_batch_size": 4, "overlap": 0.5,
                    "mode": "gaussian", "device": "$torch.device('cpu')"},
        "postprocessing": {
            "_target_": "Compose",
            "transforms": [
                {"_target_": "Activationsd", "keys": "pred", "softmax": True},
                {"_target_": "Invertd", "keys": "pred", "transform": "@preprocessing", "orig_keys": "@image_key",
                 "nearest_interp": False, "to_tensor": True},
                {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
                {"_target_": "SaveImaged", "keys": "pred", "output_dir": "@output_dir", "output_ext": "@output_ext",
                 "output_dtype": "@output_dtype", "output_postfix": "@output_postfix", "separate_folder": "@separate_folder"},
            ],
        },
        "handlers": [{"_target_": "StatsHandler", "iteration_log": False}],
        "evaluator": {"_target_": "SupervisedEvaluator", "device": "@device", "val_data_loader": "@dataloader",
                      "network": "@network", "inferer": "@inferer", "postprocessing": "@postprocessing",
                      "val_handlers": "@handlers", "amp": True},
        "checkpointloader": {"_target_": "CheckpointLoader", "load_path": "$@bundle_root + '/models/model.pt'",
                             "load_dict": {"model": "@network"}},
        "initialize": ["$monai.utils.set_determinism(seed=123)", "$@checkpointloader(@evaluator) if @load_pretrain else None"],
        "run": ["$@evaluator.run()"],
    }
    config.update(overrides)
    return config


def bundle_metadata() -> dict[str, Any]:
    """A ``metadata.json`` with the model zoo's ``network_data_format``."""
    return {
        "schema": "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20220324.json",
        "version": "0.1.0",
        "changelog": {"0.1.0": "synthetic test bundle written by tests/real_format_fixtures.py"},
        "monai_version": "1.6.1",
        "pytorch_version": "2.13.0",
        "numpy_version": "2.4.6",
        "name": "Synthetic CT lesion segmentation (test fixture)",
        "task": "Lesion segmentation on SYNTHETIC CT-like volumes",
        "description": "Random weights; a test fixture in the MONAI bundle format, not a trained model.",
        "authors": "napari-xai tests",
        "copyright": "Public domain test fixture",
        "intended_use": "Tests only",
        "network_data_format": {
            "inputs": {"image": {"type": "image", "format": "hounsfield", "modality": "CT", "num_channels": 1,
                                 "spatial_shape": BUNDLE_ROI, "dtype": "float32", "value_range": [0, 1],
                                 "is_patch_data": True, "channel_def": {"0": "image"}}},
            "outputs": {"pred": {"type": "image", "format": "segmentation", "num_channels": 2, "spatial_shape": BUNDLE_ROI,
                                 "dtype": "float32", "value_range": [0, 1], "is_patch_data": True,
                                 "channel_def": {"0": "background", "1": "lesion"}}},
        },
    }


def write_monai_bundle(root: str | Path, seed: int = 0, config: dict[str, Any] | None = None, wrap_state: bool = False) -> Path:
    """Write the bundle under ``root``; returns ``root``. ``scripts/`` leaves ``IMPORTED`` beside itself if imported."""
    from monai.networks.nets import UNet

    root = Path(root)
    (root / "configs").mkdir(parents=True, exist_ok=True)
    (root / "models").mkdir(exist_ok=True)
    (root / "scripts").mkdir(exist_ok=True)
    (root / "scripts" / "__init__.py").write_text(
        "from pathlib import Path\n(Path(__file__).parent / 'IMPORTED').write_text('scripts/ was imported')\n"
    )
    (root / "configs" / "inference.json").write_text(json.dumps(config or bundle_inference_config(), indent=4))
    (root / "configs" / "metadata.json").write_text(json.dumps(bundle_metadata(), indent=4))
    torch.manual_seed(seed)
    net = UNet(**{k: v for k, v in BUNDLE_NETWORK_DEF.items() if k != "_target_"})
    _perturb_norms(net, seed)
    state = net.state_dict()
    torch.save({"model": state} if wrap_state else state, root / "models" / "model.pt")
    return root


# --- nnU-Net ------------------------------------------------------------------------------------------------

NNUNET_PATCH = [16, 32, 32]
NNUNET_SPACING = [1.5, 0.7, 0.7]
NNUNET_CT_PROPERTIES = {"max": 737.0, "mean": 61.3, "median": 58.0, "min": -1000.0,
                        "percentile_00_5": -126.0, "percentile_99_5": 312.0, "std": 58.4}


def nnunet_plans(transpose_forward: Sequence[int] = (0, 1, 2), network: str = "PlainConvUNet") -> dict[str, Any]:
    """A ``plans.json`` with the keys nnU-Net's ``ExperimentPlanner`` writes (a small 3d_fullres U-Net)."""
    backward = [int(i) for i in np.argsort(transpose_forward)]
    arch_kwargs: dict[str, Any] = {
        "n_stages": 3,
        "features_per_stage": [4, 8, 16],
        "conv_op": "torch.nn.modules.conv.Conv3d",
        "kernel_sizes": [[1, 3, 3], [3, 3, 3], [3, 3, 3]],
        "strides": [[1, 1, 1], [1, 2, 2], [2, 2, 2]],
        "n_conv_per_stage" if network == "PlainConvUNet" else "n_blocks_per_stage": [2, 2, 2],
        "n_conv_per_stage_decoder": [2, 2],
        "conv_bias": True,
        "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
        "norm_op_kwargs": {"eps": 1e-05, "affine": True},
        "dropout_op": None,
        "dropout_op_kwargs": None,
        "nonlin": "torch.nn.LeakyReLU",
        "nonlin_kwargs": {"inplace": True},
    }
    fullres = {
        "data_identifier": "nnUNetPlans_3d_fullres",
        "preprocessor_name": "DefaultPreprocessor",
        "batch_size": 2,
        "patch_size": NNUNET_PATCH,
        "median_image_size_in_voxels": [40.0, 64.0, 64.0],
        "spacing": [NNUNET_SPACING[i] for i in transpose_forward],
        "normalization_schemes": ["CTNormalization"],
        "use_mask_for_norm": [False],
        "resampling_fn_data": "resample_data_or_seg_to_shape",
        "resampling_fn_seg": "resample_data_or_seg_to_shape",
        "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
        "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
        "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
        "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0, "force_separate_z": None},
        "architecture": {
            "network_class_name": f"dynamic_network_architectures.architectures.unet.{network}",
            "arch_kwargs": arch_kwargs,
            "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
        },
        "batch_dice": False,
    }
    two_d = json.loads(json.dumps(fullres))
    two_d.update({"data_identifier": "nnUNetPlans_2d", "batch_size": 12, "patch_size": [64, 64], "spacing": [0.7, 0.7],
                  "median_image_size_in_voxels": [64.0, 64.0]})
    a2 = two_d["architecture"]["arch_kwargs"]
    a2.update({"conv_op": "torch.nn.modules.conv.Conv2d", "norm_op": "torch.nn.modules.instancenorm.InstanceNorm2d",
               "kernel_sizes": [[3, 3]] * 3, "strides": [[1, 1], [2, 2], [2, 2]]})
    return {
        "dataset_name": "Dataset901_SyntheticCT",
        "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": [NNUNET_SPACING[i] for i in transpose_forward],
        "original_median_shape_after_transp": [40, 64, 64],
        "image_reader_writer": "SimpleITKIO",
        "transpose_forward": [int(i) for i in transpose_forward],
        "transpose_backward": backward,
        "configurations": {
            "2d": two_d,
            "3d_fullres": fullres,
            "3d_fullres_bs4": {"inherits_from": "3d_fullres", "batch_size": 4},
        },
        "experiment_planner_used": "ExperimentPlanner",
        "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {"0": NNUNET_CT_PROPERTIES},
    }


def nnunet_dataset_json() -> dict[str, Any]:
    """A ``dataset.json`` as nnU-Net v2 reads it."""
    return {
        "channel_names": {"0": "CT"},
        "labels": {"background": 0, "liver": 1, "lesion": 2},
        "numTraining": 8,
        "file_ending": ".nii.gz",
        "name": "SyntheticCT",
        "description": "SYNTHETIC CT-like volumes (napari-xai test fixture), not patient data",
    }


def nnunet_network(plans: dict[str, Any], dataset_json: dict[str, Any], configuration: str = "3d_fullres", seed: int = 0) -> torch.nn.Module:
    """The plans' network built directly (what the trainer trained), with seeded random weights."""
    import pydoc

    arch = plans["configurations"][configuration]["architecture"]
    kwargs = dict(arch["arch_kwargs"])
    for key in arch["_kw_requires_import"]:
        if kwargs[key] is not None:
            kwargs[key] = pydoc.locate(kwargs[key])
    cls = pydoc.locate(arch["network_class_name"])
    torch.manual_seed(seed)
    heads = len([k for k in dataset_json["labels"] if k != "ignore"])
    net = cls(input_channels=len(dataset_json["channel_names"]), num_classes=heads, deep_supervision=False, **kwargs)
    _perturb_norms(net, seed)
    return net.eval()


def nnunet_checkpoint(net: torch.nn.Module, plans: dict[str, Any], dataset_json: dict[str, Any], fold: int, configuration: str = "3d_fullres") -> dict[str, Any]:
    """The dict ``nnUNetTrainer.save_checkpoint`` writes, with an SGD state after one step and a numpy-scalar log."""
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.99, nesterov=True, weight_decay=3e-5)
    for p in net.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    return {
        "network_weights": net.state_dict(),
        "optimizer_state": optimizer.state_dict(),
        "grad_scaler_state": None,
        "logging": {
            "mean_fg_dice": [np.float64(0.41), np.float64(0.52)],
            "ema_fg_dice": [np.float64(0.41), np.float64(0.42)],
            "dice_per_class_or_region": [[np.float64(0.5), np.float64(0.32)], [np.float64(0.6), np.float64(0.44)]],
            "train_losses": [np.float64(-0.2), np.float64(-0.35)],
            "val_losses": [np.float64(-0.18), np.float64(-0.3)],
            "lrs": [0.01, 0.0099],
            "epoch_start_timestamps": [1.7e9, 1.7e9 + 60],
            "epoch_end_timestamps": [1.7e9 + 59, 1.7e9 + 119],
        },
        "_best_ema": np.float64(0.42),
        "current_epoch": 2,
        "init_args": {"plans": plans, "configuration": configuration, "fold": fold, "dataset_json": dataset_json,
                      "device": torch.device("cpu")},
        "trainer_name": "nnUNetTrainer",
        "inference_allowed_mirroring_axes": (0, 1, 2),
    }


def write_nnunet_results(root: str | Path, folds: Sequence[int] = (0, 1), transpose_forward: Sequence[int] = (0, 1, 2),
                         network: str = "PlainConvUNet") -> Path:
    """Write ``dataset.json``, ``plans.json`` and ``fold_N/checkpoint_final.pth`` (fold N seeded with N); returns ``root``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    plans, dataset_json = nnunet_plans(transpose_forward, network), nnunet_dataset_json()
    (root / "plans.json").write_text(json.dumps(plans, indent=4))
    (root / "dataset.json").write_text(json.dumps(dataset_json, indent=4))
    for fold in folds:
        (root / f"fold_{fold}").mkdir(exist_ok=True)
        net = nnunet_network(plans, dataset_json, seed=fold)
        torch.save(nnunet_checkpoint(net, plans, dataset_json, fold), root / f"fold_{fold}" / "checkpoint_final.pth")
    return root


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "real_format_fixtures")
    print(write_monai_bundle(out / "synthetic_ct_bundle"))
    print(write_nnunet_results(out / "Dataset901_SyntheticCT" / "nnUNetTrainer__nnUNetPlans__3d_fullres"))
