"""Same inputs give byte-identical patch shards: hashes recorded from the code before the curation contract (issue 11).

The dataset is the deterministic one of ``test_shard_helpers.make_dataset`` (numpy-seeded images, PIL
PNG/JPEG encoders pinned by constraints.txt). A change of tar bytes, patch/dropped tables or
manifest here is a change of the on-disk contract and must be deliberate.
"""

from __future__ import annotations

import hashlib

from test_shard_helpers import make_dataset

from curation import shard

GOLDEN = {
    "dropped-000000.parquet": "faaa6171a79172a5e1dfd6a04c882c417ca40a12b8145ff8b14c129d5c5f53c7",
    "dropped-000001.parquet": "6b60f0f1769b0b41826124cd3885d387800a669d1267362a82871acf89f39933",
    "dropped-000002.parquet": "8417077e52a7e2a4ed112891c2356fc2d64b943e182d4ace729348e7db1cec55",
    "dropped-000003.parquet": "faaa6171a79172a5e1dfd6a04c882c417ca40a12b8145ff8b14c129d5c5f53c7",
    "dropped-000004.parquet": "7b87e0ce6aebad41652a646ddd58516bd701d175f5381b639bf973a87d6cb65c",
    "dropped-000005.parquet": "f217136cabd04dbc157fd9c7d83f3b74dd39c256a4d0370bdc5d31b023132cbd",
    "manifest.json": "52c9c801611ec61a9754a5244063057f84590cb2d92b372b8b1f5b01fc296f88",
    "patches-000000.parquet": "db3d5608e65393e4854259771244744f537388fec839b36dfbac1528e3d29c90",
    "patches-000000.tar": "807795fe83cb9699310786cf9f0f92174ee64781e5d73ba6f815d941e9fbc448",
    "patches-000001.parquet": "f7fedce4a59b3df65b7a9eda781715b3accc56607777b595d58f0a6fa6b55914",
    "patches-000001.tar": "8d1552957d4140cc8ce274b8a7761b91f7c1aab05b201b83a9578f5d58ba455d",
    "patches-000002.parquet": "b09549ace9b89c02ad2c6b56247902d82c067384e705da8541cfea6d2a83c460",
    "patches-000002.tar": "1350ce6a966bc748a8d23982f2752a9d6933483e4463de904698c6dd3b5025fa",
    "patches-000003.parquet": "debbc0d067bce75d92a114c2c78a89386738c6e89bcc9f66603e225c5624c13a",
    "patches-000003.tar": "0e92b13b7bd6960a8d09b3400cf41fe681b3b8a10b15e674dc98e9694d6aa5ae",
    "patches-000004.parquet": "cf8fa38a9b6a8840eb668b743c0fab280e2b064c1db57fcc228c8a7dd2061924",
    "patches-000004.tar": "7f0bf185e50e08e37c6042035ad013f4d6d94db25927fe6aa98cc1bd5ef22c74",
    "patches-000005.parquet": "1530a92636be45b86d4847981cf2182670a72bf3f0a9fc84004aa111a80f60e9",
    "patches-000005.tar": "84ff92691f909a05b224e1c56abb4864f01b4f8e3c854e4bb4c7baf1d3f6d652",
}


def test_patch_shards_are_byte_identical_to_the_recorded_ones(tmp_path):
    info = make_dataset(tmp_path, n_images=6)
    out = tmp_path / "shards"
    shard.main(["--kept", str(info["kept"]), "--raw", str(info["raw"]), "--out", str(out), "--patch", "64",
                "--flat-cell", "32", "--shard-size", "60KB", "--log-level", "WARNING", "--workers", "0"])
    got = {name: hashlib.sha256((out / name).read_bytes()).hexdigest() for name in GOLDEN if (out / name).exists()}
    assert got == GOLDEN
