"""The local Hub speaks what the real ``huggingface_hub`` client sends: listing with Link
pages, repo info, resolve with ETag/commit headers, preupload, LFS basic transfer, NDJSON
commit; and the client never goes to the xet protocol."""

from __future__ import annotations

import hashlib

from huggingface_hub import HfApi, snapshot_download
from huggingface_hub.utils._runtime import is_xet_available

from hub.conftest import TOKEN


def test_upload_goes_through_lfs_basic_transfer_never_xet(local_hub, make_model, tmp_path):
    weights = bytes(range(256)) * 40
    sha = make_model("alice/seg", files={"model.safetensors": weights, "config.json": "{}"}, license="mit")
    batch = local_hub.requests_to("POST", r"\.git/info/lfs/objects/batch$")
    assert len(batch) == 1 and batch[0]["json"]["objects"] == [{"oid": hashlib.sha256(weights).hexdigest(),
                                                                  "size": len(weights)}]
    assert "basic" in batch[0]["json"]["transfers"]
    if is_xet_available():  # hf_xet is installed: the client offers xet, the server answers basic
        assert "xet" in batch[0]["json"]["transfers"]
    assert local_hub.requests_to("PUT", r"^/lfs-upload/")
    commit = local_hub.requests_to("POST", r"/commit/main$")[0]["ndjson"]
    kinds = {line["value"]["path"]: line["key"] for line in commit[1:]}
    assert kinds == {"model.safetensors": "lfsFile", "config.json": "file", "README.md": "file"}
    assert all(r["headers"].get("authorization", r["headers"].get("Authorization")) == f"Bearer {TOKEN}"
               for r in local_hub.requests if r["method"] in ("POST", "PUT") and "lfs-" not in r["path"])

    folder = snapshot_download("alice/seg", cache_dir=str(tmp_path / "cache"), endpoint=local_hub.url)
    assert folder.endswith(sha) and (tmp_path / "cache").is_dir()
    with open(f"{folder}/model.safetensors", "rb") as fh:
        assert fh.read() == weights
    assert not [r for r in local_hub.requests if "xet" in r["path"].lower()]


def test_listing_follows_link_pages_and_filters(local_hub, make_model):
    for i in range(5):
        make_model(f"alice/ct-{i}", tags=["medical"], pipeline_tag="image-segmentation")
    make_model("alice/xray", tags=["medical"], pipeline_tag="image-classification")
    for i in range(5):
        local_hub.set_meta(f"alice/ct-{i}", downloads=10 * i)
    local_hub.requests.clear()
    found = list(HfApi(endpoint=local_hub.url).list_models(filter=["medical"], pipeline_tag="image-segmentation",
                                                          sort="downloads"))
    assert [m.id for m in found] == [f"alice/ct-{i}" for i in (4, 3, 2, 1, 0)]
    pages = local_hub.requests_to("GET", r"^/api/models$")
    assert len(pages) == 3 and [p["query"].get("cursor") for p in pages] == [None, ["2"], ["4"]]


def test_republishing_identical_files_makes_no_commit(local_hub, make_model):
    sha = make_model("alice/same", files={"w.bin": b"\0" * 64}, license="mit")
    again = make_model("alice/same", files={"w.bin": b"\0" * 64}, license="mit")
    assert again == sha == local_hub.head("alice/same")
