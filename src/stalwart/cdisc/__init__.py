"""CDISC files in and out: SDTM, ADaM (XPT v5 and CSV), Define-XML, ODM (export, backup, restore),
and the ADaM reader that ``stalwart analyze`` runs a foreign trial's analysis from."""
