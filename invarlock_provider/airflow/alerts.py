"""The verdict alert: an e-mail through the SMTP provider's notifier when the gate fails.

Imported only when an alert is configured (the DAG files stay light otherwise). The message names
every report that missed its expectation, with its failed gates, ratio and bundle (the lines the
gate pushed as XCom ``missed``), and links to the gate's log. A mail that cannot be sent is logged
with the connection id and changes nothing else: the verdict, the evidence and the failed run
stand whatever the mail server does.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.smtp.notifications.smtp import SmtpNotifier

SUBJECT = "InvarLock: {{ dag.dag_id }} verdicts not as expected ({{ run_id }})"
BODY = (
    "<p>The gate of <b>{{ dag.dag_id }}</b> run <code>{{ run_id }}</code> failed: these reports did not get the"
    " verdict they were expected to have. Their evidence is archived.</p><ul>"
    "{% for line in ti.xcom_pull(task_ids=ti.task_id, key='missed') or [] %}<li>{{ line }}</li>{% endfor %}"
    '</ul><p>Gate log: <a href="{{ ti.log_url }}">{{ ti.log_url }}</a></p>'
)


class VerdictAlert(SmtpNotifier):
    """SmtpNotifier with the verdict message, whose delivery failures are logged, never raised."""

    def __init__(self, *, to: list[str], smtp_conn_id: str, from_email: str, **kwargs: Any) -> None:
        super().__init__(
            to=to, from_email=from_email, smtp_conn_id=smtp_conn_id, subject=SUBJECT, html_content=BODY, **kwargs
        )

    def notify(self, context: Any) -> None:
        try:
            super().notify(context)
        except Exception as exc:  # a mail server outage must not mask the verdict
            self.log.error("verdict alert through SMTP connection %r failed: %s", self.smtp_conn_id, exc)
