"""data_utils: class names, synthetic data sets, and getting Fashion-MNIST onto disk from any source."""

import gzip
import shutil

import matplotlib.pyplot as plt
import pytest
import torch
import torchvision
from helpers import has_debian_data, run_module, subprocess_env

import data_utils.fashion_mnist as fm
from data_utils import (
    CLASS_NAMES,
    CorruptDataError,
    DataNotFoundError,
    SyntheticFashionMNIST,
    ensure_fashion_mnist,
    load_fashion_mnist,
    load_fashion_mnist_tensors,
    make_synthetic_tensors,
    write_idx_files,
)
from data_utils.__main__ import main as data_main
from data_utils.plotting import image_class, show_pairs

NAMES = list(fm.MD5)  # the four file names, in the order they are copied


# ---------------------------------------------------------------- fixtures and helpers


@pytest.fixture
def originals(tmp_path, monkeypatch, offline):
    """Synthetic stand-ins for the four original files (unpacked) in a folder; MD5 patched to match them."""
    folder = tmp_path / "originals"
    write_idx_files(folder, *make_synthetic_tensors(50, seed=0), train=True)
    write_idx_files(folder, *make_synthetic_tensors(20, seed=1), train=False)
    monkeypatch.setattr(fm, "MD5", {name: fm.md5sum(folder / name) for name in NAMES})
    return folder


def gzipped(originals, folder):
    """A folder holding the four files as ``.gz``, as Debian ships them."""
    folder.mkdir()
    for name in NAMES:
        with open(originals / name, "rb") as src, gzip.open(folder / f"{name}.gz", "wb") as dst:
            shutil.copyfileobj(src, dst)
    return folder


def assert_verified(raw):
    """The four files are in ``raw`` with the expected MD5, and nothing half-written is left."""
    assert sorted(p.name for p in raw.iterdir()) == sorted(NAMES)
    for name in NAMES:
        assert fm.md5sum(raw / name) == fm.MD5[name]


# ---------------------------------------------------------------- class names and synthetic data


def test_class_names_match_torchvision():
    """Ten class names in torchvision's order."""
    assert len(CLASS_NAMES) == 10
    assert list(CLASS_NAMES) == torchvision.datasets.FashionMNIST.classes


def test_synthetic_tensors_shapes_and_dtypes():
    """Images are uint8 [N, 28, 28], labels int64 [N] in 0..9."""
    images, labels = make_synthetic_tensors(57, seed=3)
    assert images.shape == (57, 28, 28) and images.dtype == torch.uint8
    assert labels.shape == (57,) and labels.dtype == torch.int64
    assert int(labels.min()) >= 0 and int(labels.max()) <= 9


def test_synthetic_tensors_have_every_class_balanced():
    """Every class appears, and class sizes differ by at most one."""
    _, labels = make_synthetic_tensors(57, seed=3)
    counts = torch.bincount(labels, minlength=10)
    assert int(counts.min()) >= 5 and int(counts.max()) - int(counts.min()) <= 1


def test_synthetic_tensors_deterministic_per_seed():
    """The same seed gives the same tensors; another seed gives other ones."""
    a, b, c = (make_synthetic_tensors(40, seed=s) for s in (7, 7, 8))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_synthetic_tensors_reject_empty():
    """Asking for no images raises ValueError."""
    with pytest.raises(ValueError):
        make_synthetic_tensors(0)


def test_synthetic_dataset_items_like_torchvision(synthetic_train):
    """Items are (float32 [1, 28, 28] in [0, 1], int), like FashionMNIST with ToTensor()."""
    image, label = synthetic_train[5]
    assert image.shape == (1, 28, 28) and image.dtype == torch.float32
    assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
    assert type(label) is int and label == int(synthetic_train.targets[5])
    assert len(synthetic_train) == 200
    assert synthetic_train.classes == torchvision.datasets.FashionMNIST.classes


def test_synthetic_train_and_test_differ():
    """The test split of a seed holds other images than its train split."""
    train = SyntheticFashionMNIST(30, seed=0, train=True)
    test = SyntheticFashionMNIST(30, seed=0, train=False)
    assert not torch.equal(train.data, test.data)


def test_image_class_finds_the_label_of_an_item(synthetic_train):
    """image_class reads an item's class from the data set's pixels; an image not in it gives None."""
    for index in (0, 7, 199):
        image, label = synthetic_train[index]
        assert image_class(image, synthetic_train) == label
    assert image_class(torch.full((1, 28, 28), 0.5), SyntheticFashionMNIST(20, seed=3)) is None


def test_show_pairs_titles_both_rows(synthetic_train):
    """show_pairs titles the first image of each pair, and the second when given second_titles."""
    images = [synthetic_train[i][0] for i in range(6)]
    fig = show_pairs(images[:3], images[3:], ["a", "b", "c"], second_titles=["x", "y", "z"])
    assert [ax.get_title() for ax in fig.axes] == ["a", "b", "c", "x", "y", "z"]
    plt.close(fig)


def test_idx_files_load_in_torchvision_identically(tmp_path, monkeypatch, offline):
    """IDX files written from a synthetic set load through torchvision into the very same items."""
    synthetic = SyntheticFashionMNIST(30, seed=4, train=False)
    raw = fm.raw_folder(tmp_path)
    write_idx_files(raw, *make_synthetic_tensors(20, seed=0), train=True)
    write_idx_files(raw, synthetic.data, synthetic.targets, train=False)
    monkeypatch.setattr(fm, "MD5", {name: fm.md5sum(raw / name) for name in NAMES})
    loaded = load_fashion_mnist(tmp_path, train=False, download=False)
    assert len(loaded) == len(synthetic)
    for i in (0, 17, 29):
        assert torch.equal(loaded[i][0], synthetic[i][0]) and loaded[i][1] == synthetic[i][1]
    images, labels = load_fashion_mnist_tensors(tmp_path, train=False, download=False)
    assert torch.equal(images, synthetic.data) and torch.equal(labels, synthetic.targets)


# ---------------------------------------------------------------- ensure_fashion_mnist: where the data comes from


def test_files_under_root_win(originals, data_root, monkeypatch, tmp_path):
    """Verified files already under the root are used; FASHION_MNIST_DIR is not even looked at."""
    raw = fm.raw_folder(data_root)
    shutil.copytree(originals, raw)
    monkeypatch.setenv(fm.ENV_VAR, str(tmp_path / "nowhere"))  # would raise if consulted
    assert ensure_fashion_mnist(data_root, download=False) == raw
    assert_verified(raw)


def test_env_folder_plain_files(originals, data_root, monkeypatch):
    """Unpacked files in FASHION_MNIST_DIR are copied and verified."""
    monkeypatch.setenv(fm.ENV_VAR, str(originals))
    raw = ensure_fashion_mnist(data_root, download=False)
    assert raw == fm.raw_folder(data_root)
    assert_verified(raw)


def test_env_folder_gz_files(originals, data_root, monkeypatch, tmp_path):
    """.gz files in FASHION_MNIST_DIR are unpacked and verified."""
    monkeypatch.setenv(fm.ENV_VAR, str(gzipped(originals, tmp_path / "gz")))
    assert_verified(ensure_fashion_mnist(data_root, download=False))


def test_env_folder_incomplete_names_missing_files(originals, data_root, monkeypatch, tmp_path):
    """FASHION_MNIST_DIR without the test files gives DataNotFoundError naming them."""
    partial = tmp_path / "partial"
    partial.mkdir()
    for name in NAMES[:2]:
        shutil.copy(originals / name, partial / name)
    monkeypatch.setenv(fm.ENV_VAR, str(partial))
    with pytest.raises(DataNotFoundError) as info:
        ensure_fashion_mnist(data_root, download=False)
    message = str(info.value)
    assert (
        fm.ENV_VAR in message and "t10k-images-idx3-ubyte" in message and "t10k-labels-idx1-ubyte" in message
    )
    assert "train-images-idx3-ubyte" not in message


def test_debian_folder_used_when_nothing_else(originals, data_root, monkeypatch, tmp_path):
    """Debian's .gz files are unpacked when neither the root nor FASHION_MNIST_DIR has the data."""
    monkeypatch.setattr(fm, "DEBIAN_DIR", gzipped(originals, tmp_path / "debian"))
    assert_verified(ensure_fashion_mnist(data_root, download=False))


def test_nothing_available_names_all_options(originals, data_root, monkeypatch):
    """download=False with no source: DataNotFoundError naming the four ways to fix it, no download tried."""
    calls = []
    monkeypatch.setattr(fm, "_download", lambda root: calls.append(root))
    with pytest.raises(DataNotFoundError) as info:
        ensure_fashion_mnist(data_root, download=False)
    message = str(info.value)
    assert str(fm.raw_folder(data_root)) in message
    assert fm.ENV_VAR in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "internet" in message and "download" in message
    assert calls == []


def test_failed_download_is_data_not_found(originals, data_root):
    """download=True when the download raises: DataNotFoundError with the reason and the offline options."""
    with pytest.raises(DataNotFoundError) as info:
        ensure_fashion_mnist(data_root, download=True)
    message = str(info.value)
    assert "download failed" in message and "no network in tests" in message
    assert "apt-get install dataset-fashion-mnist" in message and fm.ENV_VAR in message


def test_download_used_last(originals, data_root, monkeypatch):
    """With no local source, a working download provides the files, which are then verified."""

    def fake_download(root):
        shutil.copytree(originals, fm.raw_folder(root))

    monkeypatch.setattr(fm, "_download", fake_download)
    assert_verified(ensure_fashion_mnist(data_root, download=True))


def test_download_without_files_is_data_not_found(originals, data_root, monkeypatch):
    """A download that returns without the files gives DataNotFoundError, not a later crash."""
    monkeypatch.setattr(fm, "_download", lambda root: None)
    with pytest.raises(DataNotFoundError, match="files are missing"):
        ensure_fashion_mnist(data_root, download=True)


# ---------------------------------------------------------------- ensure_fashion_mnist: damaged files


def test_corrupt_file_under_root(originals, data_root):
    """A damaged file already under the root gives CorruptDataError naming it."""
    raw = fm.raw_folder(data_root)
    shutil.copytree(originals, raw)
    damaged = raw / "train-labels-idx1-ubyte"
    damaged.write_bytes(damaged.read_bytes()[:-5])
    with pytest.raises(CorruptDataError) as info:
        ensure_fashion_mnist(data_root, download=False)
    assert str(damaged) in str(info.value)


def test_truncated_gz_source(originals, data_root, monkeypatch, tmp_path):
    """A truncated .gz gives CorruptDataError naming it, and leaves no half-written file behind."""
    folder = gzipped(originals, tmp_path / "gz")
    broken = folder / "t10k-images-idx3-ubyte.gz"
    broken.write_bytes(broken.read_bytes()[:100])
    monkeypatch.setenv(fm.ENV_VAR, str(folder))
    with pytest.raises(CorruptDataError) as info:
        ensure_fashion_mnist(data_root, download=False)
    assert str(broken) in str(info.value)
    raw = fm.raw_folder(data_root)
    assert not (raw / "t10k-images-idx3-ubyte").exists()
    assert not [p.name for p in raw.iterdir() if p.name.endswith(".partial")]


def test_recovers_after_truncated_source(originals, data_root, monkeypatch, tmp_path):
    """After a failed copy, a run with a good source completes the folder."""
    folder = gzipped(originals, tmp_path / "gz")
    broken = folder / "t10k-images-idx3-ubyte.gz"
    broken.write_bytes(broken.read_bytes()[:100])
    monkeypatch.setenv(fm.ENV_VAR, str(folder))
    with pytest.raises(CorruptDataError):
        ensure_fashion_mnist(data_root, download=False)
    monkeypatch.setenv(fm.ENV_VAR, str(originals))
    assert_verified(ensure_fashion_mnist(data_root, download=False))


def test_wrong_contents_in_source(originals, data_root, monkeypatch, tmp_path):
    """A source file that unpacks but holds other data gives CorruptDataError naming it."""
    folder = tmp_path / "wrong"
    shutil.copytree(originals, folder)
    wrong = folder / "train-images-idx3-ubyte"
    wrong.write_bytes(wrong.read_bytes()[:-1] + b"\x01")
    monkeypatch.setenv(fm.ENV_VAR, str(folder))
    with pytest.raises(CorruptDataError) as info:
        ensure_fashion_mnist(data_root, download=False)
    assert str(wrong) in str(info.value)
    assert not any(fm.raw_folder(data_root).iterdir())


# ---------------------------------------------------------------- python -m data_utils


def test_cli_in_process_not_found(originals, data_root, capsys):
    """With no source, the command returns 1 and prints the offline options on stderr."""
    assert data_main(["--root", str(data_root), "--no-download"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and "apt-get install dataset-fashion-mnist" in err and fm.ENV_VAR in err


def test_cli_in_process_ready(originals, data_root, monkeypatch, capsys):
    """With a source, the command returns 0 and says where the data is."""
    monkeypatch.setenv(fm.ENV_VAR, str(originals))
    assert data_main(["--root", str(data_root), "--no-download"]) == 0
    out = capsys.readouterr().out
    assert "ready" in out and str(fm.raw_folder(data_root)) in out


def test_cli_bad_env_folder_exits_1(tmp_path):
    """FASHION_MNIST_DIR naming an empty folder: exit 1, a message on stderr, no traceback."""
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_module(
        "data_utils",
        "--root",
        tmp_path / "data",
        "--no-download",
        cwd=tmp_path,
        env=subprocess_env(**{fm.ENV_VAR: empty}),
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error:") and fm.ENV_VAR in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.skipif(has_debian_data(), reason="Debian's dataset-fashion-mnist is installed, so data is found")
def test_cli_no_data_exits_1(tmp_path):
    """No source and --no-download: exit 1 with the offline options on stderr, no traceback."""
    result = run_module("data_utils", "--root", tmp_path / "data", "--no-download", cwd=tmp_path)
    assert result.returncode == 1
    assert "apt-get install dataset-fashion-mnist" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.real_data
@pytest.mark.skipif(not has_debian_data(), reason="Debian's dataset-fashion-mnist is not installed")
def test_cli_debian_data_ready(tmp_path):
    """With Debian's package installed, --no-download unpacks it and prints "ready"."""
    result = run_module("data_utils", "--root", tmp_path / "data", "--no-download", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "ready" in result.stdout


# ---------------------------------------------------------------- the real data


@pytest.mark.real_data
def test_real_data_tensors(real_data_root):
    """The real train/test sets: 60000/10000 uint8 images, each class 6000/1000 times."""
    for train, n in ((True, 60_000), (False, 10_000)):
        images, labels = load_fashion_mnist_tensors(real_data_root, train=train, download=False)
        assert images.shape == (n, 28, 28) and images.dtype == torch.uint8
        assert labels.dtype == torch.int64
        assert torch.bincount(labels, minlength=10).tolist() == [n // 10] * 10
