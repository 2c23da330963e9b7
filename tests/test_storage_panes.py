"""The disks and filesystems panes, fed from fixed frames (tests/support/synthetic_disks.py)."""

from __future__ import annotations

from dataclasses import replace

from support.harness import make_app, until_drawn
from support.synthetic import frames
from textual.widgets import Static

from tui.storage_panes import (
    BlockIoTable,
    DisksPane,
    DisksTable,
    FilesystemsPane,
    FilesystemsTable,
    figure,
)


def names(table: DisksTable) -> list[str]:
    return [prefix + disk.name for disk, prefix in table.rows]


async def test_disks_pane_shows_busy_devices_with_their_partitions_under_them() -> None:
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await until_drawn(pilot, app)
        table = app.query_one(DisksTable)
        # by %util, busiest first; loop0 and nvme0n1p1 did no I/O: hidden as by iostat -z
        assert names(table) == ["dm-0", "nvme0n1", "└─ nvme0n1p2", "sda", "└─ sda1"]
        pane = app.query_one(DisksPane)
        assert pane.border_title == "Disks 3 of 4 doing I/O"
        assert "2 saturated" in str(pane.border_subtitle)
        nvme = next(d for d, _ in table.rows if d.name == "nvme0n1")
        cells = {c.key: c.text(nvme) for c in table.columns}
        # iostat -x by hand over the synthetic second: 800 reads of 102400
        # sectors, 4000 ms reading, 2400 writes, 34000 weighted ms, 980 ms busy
        assert cells == {
            "reads": "800", "writes": "2400", "read_mib": "50.0", "write_mib": "300", "read_await": "5.00",
            "write_await": "12.5", "queue": "34.0", "util": "98.0", "device": "nvme0n1",
            # blockio: 2352 of 3200 requests in [65.5, 131) us, the slowest 1 % in [1.0, 2.1) ms
            "p50": "66-131us", "p99": "1.0-2.1ms",
        }
        assert table.row_component(nvme) == "disks-table--saturated"
        sda = next(d for d, _ in table.rows if d.name == "sda")
        assert table.row_component(sda) == "" and table.column("read_await").text(sda) == "-"
        # a partition's requests are issued on its disk: no latency of its own
        part = next(d for d, _ in table.rows if d.name == "nvme0n1p2")
        assert table.column("p50").text(part) == "-"
        assert table.column("device").text(next(d for d, _ in table.rows if d.name == "dm-0")) == "dm-0 (vg0-root)"

        table.focus()
        await pilot.press("z")
        await pilot.pause()
        assert "loop0" in names(table) and "└─ nvme0n1p1" in names(table)
        await pilot.press("z")
        await pilot.pause()
        assert "loop0" not in names(table)


async def test_a_device_that_goes_away_leaves_the_pane() -> None:
    first, second = frames()
    disks = second.samples["disks"]
    gone = replace(disks, devices=tuple(d for d in disks.devices if d.name != "sda" and d.parent != "sda"))
    app = make_app([first, replace(second, samples={**second.samples, "disks": gone})])
    async with app.run_test(size=(160, 48)) as pilot:
        await until_drawn(pilot, app)
        assert names(app.query_one(DisksTable)) == ["dm-0", "nvme0n1", "└─ nvme0n1p2"]


async def test_filesystems_pane_shows_df_figures_fullest_first() -> None:
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await until_drawn(pilot, app)
        table = app.query_one(FilesystemsTable)
        assert [fs.mount_point for fs, _ in table.rows] == ["/var/lib/postgresql", "/mnt/backup", "/", "/boot/efi"]
        pg = table.rows[0][0]
        cells = {c.key: c.text(pg) for c in table.columns}
        assert cells["size"] == "500G" and cells["avail"] == "38.0G" and cells["use"] == "92%"
        assert cells["growth"] == "+2.0M"
        assert table.row_component(pg) == "filesystems-table--full"
        efi = table.rows[-1][0]
        # vfat has no inode count: unknown, not 0 %
        assert table.column("iuse").text(efi) == "-"
        assert "1 at 90% or fuller" in str(app.query_one(FilesystemsPane).border_subtitle)


async def test_on_a_short_terminal_the_disks_pane_is_one_line_and_filesystems_steps_aside() -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await until_drawn(pilot, app)
        assert not app.query_one(FilesystemsPane).display or app.query_one(FilesystemsPane).region.height == 0
        assert app.query_one(DisksTable).region.height == 0
        pane = app.query_one(DisksPane)
        assert pane.region.height == 1
        assert str(pane.query_one(".disks-summary", Static).render()).startswith("disks nvme0n1 98% util aqu-sz 34.0")
        # the process table keeps most of the screen
        from tui.process_table import ProcessTable

        assert app.query_one(ProcessTable).region.height >= 10


async def test_at_120_columns_the_storage_panes_sit_side_by_side() -> None:
    app = make_app()
    # 48 rows or more: below, the filesystems pane steps aside (-compact)
    async with app.run_test(size=(120, 50)) as pilot:
        await until_drawn(pilot, app)
        disks, filesystems = app.query_one(DisksPane).region, app.query_one(FilesystemsPane).region
        assert disks.y == filesystems.y and disks.right <= filesystems.x


def test_figure_keeps_to_six_characters() -> None:
    assert [figure(v) for v in (None, 0.0, 0.125, 9.994, 12.34, 99.99, 285.4, 99_999.0, 1_234_567.0)] == [
        "-", "0.00", "0.12", "9.99", "12.3", "100", "285",
        "99999", "1.2M",
    ]


async def test_the_processes_issuing_block_requests_are_under_the_devices() -> None:
    app = make_app()
    # below 56 rows they step aside for the process table
    async with app.run_test(size=(200, 60)) as pilot:
        await until_drawn(pilot, app)
        pane = app.query_one(DisksPane)
        issuers = app.query_one(BlockIoTable)
        assert pane.has_class("-issuers") and issuers.display
        assert [p.comm for p, _ in issuers.rows] == ["postgres", "python3", "kworker/u4:2"]
        postgres = issuers.rows[0][0]
        cells = {c.key: c.text(postgres) for c in issuers.columns}
        # 800 reads of 64 KiB and 2000 writes of 128 KiB in the second
        assert cells == {
            "reqs": "2800", "read_mb": "50.0", "write_mb": "250", "mean": "164us", "p99": "1.0-2.1ms",
            "pid": "978", "comm": "postgres",
        }
        assert issuers.region.y > app.query_one(DisksTable).region.y


async def test_without_the_blockio_probe_latency_is_a_dash_and_the_pane_says_why() -> None:
    why = ("eBPF needs root, or CAP_BPF and CAP_PERFMON", "run `sudo orac`")
    fixed = [
        replace(f, samples={k: v for k, v in f.samples.items() if k != "blockio"},
                unavailable={**f.unavailable, "blockio": why})
        for f in frames()
    ]
    app = make_app(fixed)
    async with app.run_test(size=(160, 48)) as pilot:
        await until_drawn(pilot, app)
        table = app.query_one(DisksTable)
        nvme = next(d for d, _ in table.rows if d.name == "nvme0n1")
        assert (table.column("p50").text(nvme), table.column("p99").text(nvme)) == ("-", "-")
        pane = app.query_one(DisksPane)
        assert "latency -: eBPF needs root" in str(pane.border_subtitle)
        assert not pane.has_class("-issuers") and not app.query_one(BlockIoTable).display
