"""HQ push: files HQ sends (list slices, receipts, feedback) copied to provinces' own SFTP servers."""
