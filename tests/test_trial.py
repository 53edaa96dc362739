import tarfile

from hqsearch.pipeline.trial import archive_builds


def test_build_folders_are_packed_without_bulk_and_removed(tmp_path):
    prj = tmp_path / "hls4ml_prj"  # its own name matches the bulky "*_prj" pattern: still packed
    (prj / "firmware").mkdir(parents=True)
    (prj / "firmware" / "myproject.cpp").write_text("// top")
    (prj / "myproject_prj" / "solution1").mkdir(parents=True)
    (prj / "myproject_prj" / "solution1" / "big.dat").write_text("x" * 1000)
    (prj / "firmware" / "emulation.so").write_text("binary")
    (tmp_path / "rtl" / "src").mkdir(parents=True)
    (tmp_path / "rtl" / "src" / "model.v").write_text("module model; endmodule")

    archives = archive_builds(tmp_path, keep_build=False)
    assert sorted(a.name for a in archives) == ["hls4ml_prj.tar.gz", "rtl.tar.gz"]
    with tarfile.open(tmp_path / "hls4ml_prj.tar.gz") as tar:
        names = set(tar.getnames())
    assert "hls4ml_prj/firmware/myproject.cpp" in names
    assert not any("myproject_prj" in n or n.endswith(".so") for n in names)
    assert not prj.exists() and not (tmp_path / "rtl").exists()


def test_keep_build_packs_everything_and_keeps_the_folders(tmp_path):
    (tmp_path / "hls4ml_prj" / "myproject_prj").mkdir(parents=True)
    (tmp_path / "hls4ml_prj" / "myproject_prj" / "report.xml").write_text("<r/>")
    (archive,) = archive_builds(tmp_path, keep_build=True)
    with tarfile.open(archive) as tar:
        assert "hls4ml_prj/myproject_prj/report.xml" in tar.getnames()
    assert (tmp_path / "hls4ml_prj").is_dir()
