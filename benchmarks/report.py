"""What the bench prints and writes: the headline figures of `make bench` with their
targets, its tables, the table of `make gpu-check`, and the JSON of either."""

import json

from benchmarks import stats
from transfernet.atomic import write_text


def summary(results):
    """The headline figures (flat keys of bench.json) from the measurement results."""
    deploy, data = results["deploy"], results["data_layer"]
    out = {
        "python_layer_share": results["joint"]["python_layer_share"],
        "python_layer_share_cpu": results["joint"]["python_layer_share_cpu"],
        "joint_forward_backward_s_batch1": (
            results["joint"]["forward_s"] + results["joint"]["backward_s"]
        ),
        "deploy_speedup_k1": deploy["speedup"][1],
        "deploy_speedup_k1_ci95_low": deploy["speedup_ci95"][1][0],
        "deploy_speedup_k1_ci95_high": deploy["speedup_ci95"][1][1],
        "deploy_speedup_k2": deploy["speedup"][2],
        "deploy_speedup_k3": deploy["speedup"][3],
        "deploy_speedup_wall_k1": deploy["speedup_wall"][1],
        "deploy_speedup_wall_k3": deploy["speedup_wall"][3],
        "data_layer_images_per_s_1worker": data["images_per_s"][1],
        "data_layer_images_per_s_2workers": data["images_per_s"][2],
        "data_layer_images_per_cpu_s_inprocess": data["per_cpu_s_inprocess"],
        "eval_seconds_1449": results["eval"]["seconds"],
        "eval_cpu_seconds_1449": results["eval"]["cpu_seconds"],
        "lmdb_build_records_per_s_source": results["build"]["source"]["records_per_s"],
        "lmdb_build_records_per_s_target": results["build"]["target"]["records_per_s"],
        "peak_rss_mb_joint_train": results["rss"]["vmhwm_mb"],
        "joint_train_step_s_batch8": results["rss"]["seconds"],
        # the GPU-readiness figures: Python layers' host<->device traffic, unpooling time
        "python_layer_mb_joint_batch4": stats.total_mb(
            results["joint"]["python_layer_bytes"]["batch_4"]
        ),
        "python_layer_mb_joint_batch4_python_unpool": stats.total_mb(
            results["unpool"]["python_unpool_layer_bytes"]
        ),
        "python_layer_mb_deploy_k3": stats.total_mb(deploy["python_layer_bytes_k3"]),
        "stock_unpool_time_ratio": results["unpool"]["time_ratio"],
        "stock_unpool_time_ratio_wall": results["unpool"]["time_ratio_wall"],
    }
    if "infer_workers" in results:
        out["infer_crf_speedup_2workers"] = results["infer_workers"]["speedup"]
    if "authors" in results:
        for k, seconds in sorted(results["authors"]["seconds"].items()):
            out["authors_deploy_seconds_per_image_k%d" % k] = seconds
    return out


def format_report(bench):
    """Plain-text tables: the headline figures with their targets, then one section per
    measurement (the joint net's layers, the unpooling, the Python layers' bytes, the deploy
    net, the authors' protocol if measured)."""
    sections = (summary_lines, joint_lines, unpool_lines, python_bytes_lines, deploy_lines)
    lines = [line for section in sections for line in section(bench)]
    if "authors" in bench:
        lines += authors_lines(bench["authors"])
    return "\n".join(lines)


def summary_lines(bench):
    machine = bench["machine"]
    lines = [
        "machine: %d cores, %s; loadavg start %s, end %s"
        % (
            machine["cores"],
            machine["cpu_model"],
            machine["loadavg_start"],
            machine["loadavg_end"],
        ),
        "",
        "%-40s %12s  %-10s %s" % ("figure", "value", "target", "met"),
    ]
    for key, value in bench["summary"].items():
        met = stats.check_target(key, value)
        target = "%s %g" % stats.TARGETS[key] if key in stats.TARGETS else ""
        lines.append(
            "%-40s %12.4g  %-10s %s"
            % (key, value, target, {None: "", True: "yes", False: "NO"}[met])
        )
    return lines


def joint_lines(bench):
    """The joint net's Python layers and its 12 slowest layers, ms per forward / backward."""
    joint = bench["joint"]
    lines = [
        "",
        "joint net (paper size, batch 1), per-layer ms: Python layers and the 12 slowest",
        "%-28s %-14s %10s %10s %7s" % ("layer", "type", "forward", "backward", "share"),
    ]
    total = joint["forward_s"] + joint["backward_s"]
    rows = joint["layers"]
    slow = sorted(rows, key=lambda r: -(r["forward_s"] + r["backward_s"]))[:12]
    for r in (r for r in rows if r["type"] == "Python" or r in slow):
        both = r["forward_s"] + r["backward_s"]
        lines.append(
            "%-28s %-14s %10.2f %10.2f %6.2f%%"
            % (
                r["name"],
                r["type"],
                1e3 * r["forward_s"],
                1e3 * r["backward_s"],
                100 * both / total,
            )
        )
    lines.append(
        "%-28s %-14s %10.2f %10.2f"
        % ("total", "", 1e3 * joint["forward_s"], 1e3 * joint["backward_s"])
    )
    return lines


def unpool_lines(bench):
    unpool = bench["unpool"]
    return [
        "",
        "unpooling, paper-size joint forward+backward (batch 1, CPU s, medians): "
        "stock %.3f, Python Unpool %.3f, ratio %.4f [%.4f, %.4f] (wall %.4f); the "
        "unpooling layers alone %.1f / %.1f ms"
        % (
            (unpool["stock_cpu_s"], unpool["python_cpu_s"], unpool["time_ratio"])
            + tuple(unpool["time_ratio_ci95"])
            + (
                unpool["time_ratio_wall"],
                1e3 * unpool["unpool_layers_cpu_s"]["stock"],
                1e3 * unpool["unpool_layers_cpu_s"]["python"],
            )
        ),
    ]


def python_bytes_lines(bench):
    joint = bench["joint"]
    batches = sorted(joint["python_layer_bytes"], key=lambda b: int(b.split("_")[1]))
    return (
        bytes_table(
            "Python layer host<->device MB per iteration (forward + backward), joint net",
            {b: joint["python_layer_bytes"][b] for b in batches},
        )
        + bytes_table(
            "... at batch 4 with the Python Unpool layer (before)",
            {"batch_4": bench["unpool"]["python_unpool_layer_bytes"]},
        )
        + bytes_table(
            "... deploy net, one image with K = 3 labels (forward)",
            {"k_3": bench["deploy"]["python_layer_bytes_k3"]},
        )
    )


def deploy_lines(bench):
    deploy = bench["deploy"]
    lines = [
        "",
        "deploy, medians over rounds: K, rounds, ours and theirs (K one-label "
        "forwards) wall s | CPU s, speedup by CPU [95 % interval] | wall",
    ]
    for k in sorted(deploy["ours_s"]):
        lines.append(
            "  K=%d %3d  %7.3f  %7.3f | %7.3f  %7.3f   %5.3f [%5.3f, %5.3f] | %5.3f"
            % (
                (k, len(deploy["rounds"][k]), deploy["ours_s"][k], deploy["theirs_s"][k])
                + (deploy["ours_cpu_s"][k], deploy["theirs_cpu_s"][k], deploy["speedup"][k])
                + tuple(deploy["speedup_ci95"][k])
                + (deploy["speedup_wall"][k],)
            )
        )
    return lines


def authors_lines(authors):
    lines = [
        "",
        "the authors' protocol per %dx%d image, medians (s): K, forward + post-processing "
        "= total wall | CPU" % tuple(authors["image"][::-1]),
    ]
    for k in sorted(authors["seconds"]):
        lines.append(
            "  K=%d  %7.3f + %7.3f = %7.3f | %7.3f + %7.3f"
            % (
                k,
                authors["forward_s"][k],
                authors["finish_s"][k],
                authors["seconds"][k],
                authors["forward_cpu_s"][k],
                authors["finish_cpu_s"][k],
            )
        )
    return lines


def bytes_table(title, columns):
    """Lines: the title, then per Python layer one "forward + backward = total" MB cell per
    column ({column name: python_layer_bytes result}), then the totals."""
    lines = ["", title, "%-20s" % "layer" + "".join("%24s" % c for c in columns)]
    names = []
    for table in columns.values():
        names += [name for name in table if name not in names]
    for name in names:
        lines.append(
            "%-20s" % name
            + "".join(
                "%24s"
                % (
                    "%7.2f + %6.2f = %6.2f"
                    % tuple(table[name][k] / stats.MB for k in ("forward", "backward", "total"))
                    if name in table
                    else ""
                )
                for table in columns.values()
            )
        )
    lines.append(
        "%-20s" % "total" + "".join("%24.2f" % stats.total_mb(table) for table in columns.values())
    )
    return lines


def write_json(path, bench):
    """bench.json, atomically; dict keys become strings (K = 1 -> "1")."""
    write_text(path, json.dumps(bench, indent=1, sort_keys=True) + "\n")


def format_gpu_report(result):
    """The table `make gpu-check` prints."""
    c = result["comparison"]
    kind, name, rel = c["worst"]
    lines = [
        "gpu-check: GPU %d; CUDA Caffe: %s" % (result["gpu"], "; ".join(result["cuda"])),
        "",
        "device_query:",
    ] + ["  " + line for line in result["device_query"]]
    lines += [
        "",
        "CPU vs GPU, joint net (paper size), batch %d, same random weights and batch:"
        % result["batch"],
        "  %-44s %12s %10s" % ("", "max rel diff", "bound"),
    ]
    for k in ("losses", "gradients"):
        lines.append(
            "  %-44s %12.3g %10.0e"
            % ("%s (%d)" % (k, len(c[k])), max(c[k].values()), result["tolerance"])
        )
    lines += [
        "  worst: %s %s %.3g -> %s" % (kind, name, rel, "ok" if c["ok"] else "FAILED"),
        "  losses CPU / GPU: "
        + ", ".join(
            "%s %.6g / %.6g" % (n, result["losses"]["cpu"][n], result["losses"]["gpu"][n])
            for n in sorted(result["losses"]["cpu"])
        ),
        "",
        "%-52s %10s" % ("timing", "seconds"),
    ]
    t = result["timing"]
    lines.append(
        "%-52s %10.4f"
        % (
            "joint forward + backward, batch %d, CPU (one pass)" % result["batch"],
            result["cpu_seconds"],
        )
    )
    lines.append(
        "%-52s %10.4f"
        % ("joint forward + backward, batch %d, GPU (mean)" % result["batch"], t["seconds"])
    )
    lines.append("%-52s %9.1f%%" % ("  of which Python layers", 100 * t["python_layer_share"]))
    d = result["deploy"]
    for k in sorted(d["ours_s"]):
        lines.append(
            "%-52s %10.4f" % ("deploy per image, K=%d labels in one forward" % k, d["ours_s"][k])
        )
        lines.append(
            "%-52s %10.4f" % ("deploy per image, K=%d one-label forwards" % k, d["theirs_s"][k])
        )
    return "\n".join(lines)
