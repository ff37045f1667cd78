"""Detection: YOLO models (exact conversion), boxes, loss, NMS, mAP, and the datasets."""

import json
import math
from pathlib import Path

import pytest
import torch
from conftest import realistic_qann
from PIL import Image

from spikezip.data import DatasetNotFoundError, build_datasets
from spikezip.data.detection import coco, mnist_detection, pad_targets, unpad, voc
from spikezip.detection.grid import Grid, postprocess
from spikezip.detection.loss import assign, yolo_distillation, yolo_loss
from spikezip.detection.metric import DetectionMAP
from spikezip.models.yolo import Head, anchors_for, yolov3, yolov3_tiny
from spikezip.snn import check_equivalence, to_snn

# ---------------------------------------------------------------- models ----


@pytest.mark.parametrize(
    "build, size, rows",
    [
        (lambda: yolov3_tiny(7, in_channels=1, width=0.125), 64, 3 * (2 * 2 + 4 * 4)),
        (lambda: yolov3(7, width=0.0625), 64, 3 * (2 * 2 + 4 * 4 + 8 * 8)),
    ],
)
def test_output_rows_follow_the_grid(build, size, rows):
    model = build().eval()
    x = torch.randn(
        2, model.backbone.stem[0].in_channels if hasattr(model, "backbone") else 1, size, size
    )
    out = model(x)
    assert out.shape == (2, rows, 5 + 7)
    assert Grid(model.heads, size).rows == rows
    assert [h.stride for h in model.heads] == sorted((h.stride for h in model.heads), reverse=True)


def test_tiny_yolo_converts_exactly_in_float64():
    torch.manual_seed(0)
    x = torch.randn(3, 1, 64, 64, dtype=torch.float64)
    anchors = anchors_for("yolov3_tiny", "mnist_detection")
    qann = realistic_qann(yolov3_tiny(5, anchors, 1, width=0.125), 4, x)
    snn = to_snn(qann).double()
    report = check_equivalence(qann, snn, x)
    assert report.equivalent and report.reached_equilibrium, report
    assert all(layer.max_abs_diff == 0.0 for layer in report.layers)
    assert len(report.layers) == 11  # every activation (max-pools are averages now)


@pytest.mark.slow
def test_yolov3_converts_exactly_in_float64():
    torch.manual_seed(1)
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    qann = realistic_qann(yolov3(4, width=0.0625), 2, x)
    report = check_equivalence(qann, to_snn(qann).double(), x)
    assert report.equivalent and report.reached_equilibrium, report
    assert len(report.layers) == 72  # 52 convs of Darknet-53 + 20 in the heads


# ---------------------------------------------------------------- grid, decoding, NMS ----

HEADS = (Head(32, ((40.0, 40.0),)), Head(16, ((10.0, 20.0), (20.0, 10.0))))


def test_rows_decode_to_their_cell_and_anchor():
    grid = Grid(HEADS, 64)  # 2x2 cells of 32 px (1 anchor), then 4x4 of 16 px (2 anchors)
    assert grid.rows == 4 + 2 * 16
    out = torch.zeros(1, grid.rows, 5 + 3)
    boxes = grid.boxes(out)[0]
    # row 3: head 0, cell (1, 1): centre (1.5 * 32, 1.5 * 32), anchor 40x40
    assert boxes[3].tolist() == [28.0, 28.0, 68.0, 68.0]
    row = grid.row(1, 1, torch.tensor(2), torch.tensor(1))  # head 1, anchor 1, cell (2, 1)
    assert int(row) == 4 + 16 + 1 * 4 + 2
    out[0, row, 2] = math.log(2.0)  # twice the anchor's width
    assert grid.boxes(out)[0, row].tolist() == [20.0, 19.0, 60.0, 29.0]


def test_postprocess_keeps_one_box_per_object_and_class():
    grid = Grid(HEADS, 64)
    out = torch.full((1, grid.rows, 5 + 3), -20.0)
    out[..., :4] = 0.0
    # 40x40 boxes of head 0: row 3 at cell (1, 1) -> x 28..68, row 2 at (0, 1) -> x -4..36
    for row, cls, obj in ((3, 1, 5.0), (2, 1, 3.0), (1, 2, 4.0)):
        out[0, row, 4], out[0, row, 5 + cls] = obj, 20.0
    found = postprocess(grid, out, iou_threshold=0.3)[0]
    assert found.labels.tolist() == [1, 2, 1]  # IoU of rows 2 and 3 is 0.11: both kept
    assert found.scores[0].item() == pytest.approx(torch.sigmoid(torch.tensor(5.0)).item())
    assert found.boxes[2].tolist() == [0.0, 28.0, 36.0, 64.0]  # clipped to the image
    out[0, 2, 0] = 20.0  # row 2's centre moves right by half a cell: IoU 0.43 with row 3
    merged = postprocess(grid, out, iou_threshold=0.3)[0]
    assert merged.labels.tolist() == [1, 2]
    out[0, 2, 5 + 1], out[0, 2, 5 + 0] = -20.0, 20.0  # another class is never suppressed
    assert postprocess(grid, out, iou_threshold=0.3)[0].labels.tolist() == [1, 2, 0]


# ---------------------------------------------------------------- loss ----


def _one_object(label=2, box=(20.0, 16.0, 30.0, 36.0)):
    return pad_targets(torch.tensor([label]), torch.tensor([box]), torch.zeros(1), 4)[None]


def test_assignment_picks_the_best_fitting_anchor_and_cell():
    grid = Grid(HEADS, 64)
    fit = assign(grid, _one_object())  # 10x20 box centred at (25, 26)
    assert fit.batch.tolist() == [0]
    assert int(fit.row) == int(grid.row(1, 0, torch.tensor(1), torch.tensor(1)))
    assert fit.xy[0].tolist() == pytest.approx([25 / 16 - 1, 26 / 16 - 1])
    assert fit.wh[0].tolist() == pytest.approx([0.0, 0.0])  # exactly the anchor's shape
    assert fit.weight.item() == pytest.approx(2 - 200 / 64**2)


def test_loss_of_a_perfect_prediction_is_the_entropy_of_its_offsets():
    grid = Grid(HEADS, 64)
    targets = _one_object()
    fit = assign(grid, targets)
    out = torch.full((1, grid.rows, 5 + 3), -30.0)
    p = fit.xy[0]
    out[0, fit.row, :2] = torch.log(p / (1 - p))
    out[0, fit.row, 2:4] = fit.wh[0]
    out[0, fit.row, 4] = 30.0
    out[0, fit.row, 5 + 2] = 30.0
    entropy = -(p * p.log() + (1 - p) * (1 - p).log()).sum()
    assert yolo_loss(grid, out, targets).item() == pytest.approx(
        fit.weight.item() * entropy.item(), rel=1e-4
    )
    out[0, fit.row, 5 + 2] = -30.0  # wrong class: the loss grows by about 30
    assert yolo_loss(grid, out, targets).item() > 29


def test_difficult_objects_are_not_positives_and_padding_is_ignored():
    grid = Grid(HEADS, 64)
    targets = pad_targets(
        torch.tensor([0, 1]),
        torch.tensor([[0.0, 0, 10, 20], [30, 30, 50, 40]]),
        torch.tensor([1, 0]),
        5,
    )[None]
    fit = assign(grid, targets)
    assert fit.label.tolist() == [1]
    out = torch.zeros(1, grid.rows, 8, requires_grad=True)
    yolo_loss(grid, out, targets).backward()
    assert torch.isfinite(out.grad).all()


def test_distillation_is_zero_for_the_teacher_and_grows_away_from_it():
    torch.manual_seed(0)
    teacher = torch.randn(2, 36, 8)
    assert yolo_distillation(teacher.clone(), teacher, 2.0).item() == pytest.approx(0.0, abs=1e-5)
    near = yolo_distillation(teacher + 0.1, teacher).item()
    far = yolo_distillation(teacher + 1.0, teacher).item()
    assert 0 < near < far


# ---------------------------------------------------------------- mAP ----


def test_map_of_fabricated_predictions():
    grid = Grid(HEADS, 64)
    targets = pad_targets(
        torch.tensor([0, 1]), torch.tensor([[28.0, 28, 68, 68], [0, 0, 40, 40]]), torch.zeros(2), 4
    )[None]
    metric = DetectionMAP(grid)
    out = torch.full((1, grid.rows, 5 + 3), -20.0)
    out[..., :4] = 0.0
    out[0, 3, 4], out[0, 3, 5 + 0] = 10.0, 10.0  # row 3 decodes to (28, 28, 68, 68), class 0
    out[0, 0, 4], out[0, 0, 5 + 1] = 10.0, 10.0  # row 0 decodes to (-4, -4, 36, 36) -> clipped
    metric.update(out, targets)
    values = metric.compute()
    assert values["map50"] == pytest.approx(1.0)
    assert 0.5 < values["map"] < 1.0  # the second box overlaps with IoU 0.81 only
    metric.reset()
    out[0, 0, 5 + 1], out[0, 0, 5 + 2] = -10.0, 10.0  # the second box gets the wrong class
    metric.update(out, targets)
    # class 0 found (AP 1), class 1 missed (AP 0); class 2 has no object, so COCO's mean
    # leaves it out
    assert metric.compute()["map50"] == pytest.approx(0.5)


# ---------------------------------------------------------------- datasets ----


def test_synthetic_digits_are_seeded_and_boxed_tightly():
    train, val, info = mnist_detection(seed=3, train_size=20, val_size=5, image_size=96)
    assert (len(train), len(val), info.num_classes, info.image_size) == (20, 5, 10, 96)
    x, target = train[7]
    assert x.shape == (1, 96, 96) and target.shape == (8, 6)
    assert torch.equal(train[7][0], x) and torch.equal(train[7][1], target)
    labels, boxes, difficult = unpad(target)
    assert 1 <= len(labels) <= 4 and not difficult.any()
    ink = x[0] > x.min() + 0.5
    inside = torch.zeros_like(ink)
    for x1, y1, x2, y2 in boxes.long().tolist():
        inside[y1:y2, x1:x2] = True
        assert ink[y1:y2, x1:x2].any()
    assert not (ink & ~inside).any()  # no ink outside the boxes
    assert not torch.equal(mnist_detection(seed=4, train_size=20)[0][7][0], x)


def _jpeg(path, size=(50, 40)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (120, 30, 200)).save(path)


def _voc_tree(root, year="2007"):
    base = root / "VOCdevkit" / f"VOC{year}"
    objects = {
        "000001": [("dog", 1, 1, 25, 20, 0), ("person", 10, 5, 50, 40, 1)],
        "000002": [("cat", 5, 6, 15, 16, 0)],
    }
    for image_id, objs in objects.items():
        _jpeg(base / "JPEGImages" / f"{image_id}.jpg")
        xml = "".join(
            f"<object><name>{n}</name><difficult>{d}</difficult><bndbox><xmin>{a}</xmin>"
            f"<ymin>{b}</ymin><xmax>{c}</xmax><ymax>{e}</ymax></bndbox></object>"
            for n, a, b, c, e, d in objs
        )
        (base / "Annotations").mkdir(parents=True, exist_ok=True)
        (base / "Annotations" / f"{image_id}.xml").write_text(
            f"<annotation><filename>{image_id}.jpg</filename><size><width>50</width>"
            f"<height>40</height><depth>3</depth></size>{xml}</annotation>"
        )
    (base / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    (base / "ImageSets" / "Main" / "trainval.txt").write_text("000001\n")
    (base / "ImageSets" / "Main" / "test.txt").write_text("000002\n")


def test_voc_reads_the_real_layout(tmp_path):
    _voc_tree(tmp_path)
    train, val, info = voc(
        tmp_path, train_sets=[("2007", "trainval")], image_size=100, augment=False
    )
    assert info.num_classes == 20 and len(train) == 1 and len(val) == 1
    x, target = train[0]
    assert x.shape == (3, 100, 100)
    labels, boxes, difficult = unpad(target)
    assert labels.tolist() == [11, 14]  # dog, person
    assert difficult.tolist() == [False, True]
    # 1-based inclusive (1, 1, 25, 20) in a 50x40 image -> (0, 0, 25, 20) * (2, 2.5)
    assert boxes[0].tolist() == pytest.approx([0.0, 0.0, 50.0, 50.0])
    with pytest.raises(DatasetNotFoundError, match="VOC2012"):
        voc(tmp_path, train_sets=[("2012", "trainval")])
    # by name, as data=voc data.train_split=... reads it; the test image set for both
    train, val, info = build_datasets(
        "voc", tmp_path, augment=False, train_split="2007-test", val_split="2007-test",
        image_size=64, max_objects=3,
    )  # fmt: skip
    assert len(train) == len(val) == 1 and val[0][1].shape == (3, 6)
    assert unpad(val[0][1])[0].tolist() == [7]  # cat


def test_coco_reads_the_real_layout(tmp_path):
    for split, image_ids in (("train2017", [1, 2]), ("val2017", [3])):
        for i in image_ids:
            _jpeg(tmp_path / split / f"{i:012d}.jpg")
        annotations = [
            {
                "id": 10 * i,
                "image_id": i,
                "category_id": 18,
                "bbox": [5, 4, 10, 8],
                "iscrowd": 0,
                "area": 80,
            }
            for i in image_ids
        ] + [
            {
                "id": 99,
                "image_id": image_ids[0],
                "category_id": 90,
                "bbox": [0, 0, 5, 5],
                "iscrowd": 1,
                "area": 25,
            }
        ]
        doc = {
            "images": [
                {"id": i, "file_name": f"{i:012d}.jpg", "width": 50, "height": 40}
                for i in image_ids
            ],
            "annotations": annotations,
            "categories": [
                {"id": 1, "name": "person"},
                {"id": 18, "name": "dog"},
                {"id": 90, "name": "toothbrush"},
            ],
        }
        (tmp_path / "annotations").mkdir(exist_ok=True)
        (tmp_path / "annotations" / f"instances_{split}.json").write_text(json.dumps(doc))
    train, val, info = coco(tmp_path, image_size=100, augment=False)
    assert info.classes == ("person", "dog", "toothbrush") and len(train) == 2
    labels, boxes, crowd = unpad(val[0][1])
    assert labels.tolist() == [1, 2] and crowd.tolist() == [False, True]
    assert boxes[0].tolist() == pytest.approx([10.0, 10.0, 30.0, 30.0])
    (tmp_path / "annotations" / "instances_val2017.json").write_text("{not json")
    with pytest.raises(DatasetNotFoundError, match="cannot be read"):
        coco(tmp_path)
    with pytest.raises(DatasetNotFoundError, match="annotations"):
        coco(tmp_path / "nowhere")


# ---------------------------------------------------------------- SNN measurement ----


def test_snn_detections_at_equilibrium_are_the_qanns():
    from spikezip.snn import measure_snn
    from spikezip.tasks import Detection

    torch.manual_seed(2)
    train, _, info = mnist_detection(train_size=6, val_size=1, image_size=64)
    x = torch.stack([train[i][0] for i in range(6)]).double()
    targets = torch.stack([train[i][1] for i in range(6)])
    arch = {"name": "yolov3_tiny", "num_classes": 10, "image_size": 64, "anchors": None}
    qann = realistic_qann(yolov3_tiny(10, in_channels=1, width=0.125), 4, x)
    with torch.no_grad():  # a confident object in every image, so there is something to find
        qann.out16[-1].bias.view(3, 15)[:, 4] += 6.0
    snn = to_snn(qann).double()
    task = Detection.of(arch)
    totals = measure_snn(
        snn,
        qann,
        [(x[:4], targets[:4]), (x[4:], targets[4:])],
        timesteps=8,
        task=task,
        progress=False,
    )
    report = totals.report()
    assert totals.count == 6 and totals.settled == 6
    assert report["identical"] == 1.0
    assert report["map_timesteps"] == [1, 2, 4, 8]
    assert (
        report["snn_map50_eq"] == report["qann_map50"]
        and report["snn_map_eq"] == report["qann_map"]
    )
    assert report["output_error_per_t"][-1] < report["output_error_per_t"][0]
    found = DetectionMAP(task.grid).detections(qann(x))
    assert sum(len(d.labels) for d in found) > 0  # the comparison was not of empty sets
    metrics = totals.metrics()
    assert metrics["snn/identical"] == 1.0 and "snn/map50_t008" in metrics


# ---------------------------------------------------------------- the pipeline ----


def test_task_detection_runs_the_whole_pipeline(tmp_path):
    from hydra import compose, initialize_config_dir

    from spikezip.artifacts import load_snn
    from spikezip.compare import summarize
    from spikezip.config import TrainConfig, register_configs, validate
    from spikezip.lit.pipeline import train
    from spikezip.tasks import Detection

    register_configs()
    overrides = ["task=detection", "trainer=debug", "data.train_size=16", "data.val_size=8",
                 "data.batch_size=8", "data.eval_batch_size=8", "model.width=0.125"]  # fmt: skip
    conf = Path(__file__).resolve().parents[1] / "conf"
    with initialize_config_dir(str(conf), version_base=None):
        cfg = compose("train", overrides=overrides)
    summary = train(cfg, tmp_path)
    report = json.loads((tmp_path / "snn_eval.json").read_text())
    assert report == json.loads(json.dumps(summary.to_json()))
    assert report["map_timesteps"] == [1, 2, 4, 8] and len(report["snn_map50"]) == 4
    assert report["identical"] == 1.0 and report["samples"] == 8
    assert report["snn_map50_eq"] == report["qann_map50"] >= 0  # -1: no object to find
    # The comparisons are not of empty sets: the QANN finds boxes (after the metric's own
    # score threshold and NMS) in each of the 8 images measured, every one with objects.
    # A detector trained for two steps finds none of the digits (its mAP is 0; its boxes
    # are its biases', the same in every image), so the equal mAPs say little alone;
    # "identical" says that the SNN found these same boxes.
    _, qann, metadata = load_snn(tmp_path / "snn.pt")
    _, val, _ = build_datasets(**validate(cfg, TrainConfig).data.keywords(augment=False))
    assert len(val) == 8 and all(len(unpad(val[i][1])[0]) > 0 for i in range(8))
    with torch.no_grad():
        outputs = qann.eval()(torch.stack([val[i][0] for i in range(8)]))
    found = DetectionMAP(Detection.of(metadata["arch"]).grid).detections(outputs)
    assert [len(d.labels) > 0 for d in found] == [True] * 8
    assert json.loads((tmp_path / "equivalence.json").read_text())["equivalent"]
    for name in ("map_vs_timestep.csv", "map_vs_timestep.png", "energy.png", "snn.pt"):
        assert (tmp_path / name).is_file(), name
    metrics = (tmp_path / "logs" / "pet" / "metrics.csv").read_text().splitlines()[0]
    assert "val/map50" in metrics and "snn/map50_t001" in metrics and "acc" not in metrics
    rows = summarize([tmp_path], tmp_path / "summary")
    assert rows[0]["qann_map50"] == report["qann_map50"] and rows[0]["snn_T8"] is not None
