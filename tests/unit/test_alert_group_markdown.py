"""An alert posted in a WeCom group is WeCom markdown: our bold labels stay markup, the
values (a flow's name, an error a vendor wrote) can open no link, mention or heading."""

from __future__ import annotations

from sync_pipeline.connectors.wecom import group_markdown


def test_given_hostile_alert_text_then_the_wecom_group_markdown_shows_it_as_text() -> None:
    content = {
        "title": "[FIRING] runs_failing: **x**",
        "text": "# boom [click](http://evil.example) <@all>",
        "fields": {"Next": "syncctl flow resume f"},
    }

    message = group_markdown(content)

    text = message["markdown"]["content"]
    assert message["msgtype"] == "markdown"
    assert text.startswith("**［FIRING］ runs＿failing: ＊＊x＊＊**\n")
    assert "](" not in text
    assert "<@" not in text
    assert "\n#" not in text
    assert text.endswith("**Next**: syncctl flow resume f")
