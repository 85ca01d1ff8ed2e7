"""Test helpers of the mail-migration capability (corpus loading, mailbox reset)."""
