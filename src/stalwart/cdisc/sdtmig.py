"""SDTMIG 3.4 metadata of the domains stalwart writes: each variable's order, role and core.

Taken from CDISC's SDTMIG v3.4 variable table (order within the domain, role, and whether the
variable is Required, Expected or Permissible). The export orders every dataset's variables as the
IG lists them, writes the role on each define.xml ItemRef, and checks that every Required and
Expected variable is present (an Expected one may be empty, a Required one may not). One token per
variable: ``NAME:RC`` with R the role (I identifier, T topic, M timing, G grouping, S synonym,
R record, V variable, Q result qualifier, U rule) and C the core (R, E or P). One variable of
the SDTM v2.0 model that the IG's LB table does not list is added where the model's Findings
class orders it: LBLLOQ (the assay's lower limit of quantitation, after LBCLSIG).
"""

from __future__ import annotations

from functools import cache

from stalwart.errors import ExportError

__all__ = ["IG_VERSION", "SDTM_VERSION", "IgVariable", "ig_variables", "order_by_ig"]

IG_VERSION = "3.4"
"""The SDTMIG version the metadata (and so the export) follows."""
SDTM_VERSION = "2.0"
"""The SDTM model version SDTMIG 3.4 implements."""

_ROLES = {
    "I": "Identifier",
    "T": "Topic",
    "M": "Timing",
    "G": "Grouping Qualifier",
    "S": "Synonym Qualifier",
    "R": "Record Qualifier",
    "V": "Variable Qualifier",
    "Q": "Result Qualifier",
    "U": "Rule",
}
_CORES = {"R": "Req", "E": "Exp", "P": "Perm"}

_TABLE: dict[str, str] = {
    "DM": (
        "STUDYID:IR DOMAIN:IR USUBJID:IR SUBJID:TR RFSTDTC:RE RFENDTC:RE RFXSTDTC:RE "
        "RFXENDTC:RE RFCSTDTC:RP RFCENDTC:RP RFICDTC:RE RFPENDTC:RE DTHDTC:RE DTHFL:RE "
        "SITEID:RR INVID:RP INVNAM:SP BRTHDTC:RP AGE:RE AGEU:VE SEX:RR RACE:RE ETHNIC:RP "
        "ARMCD:RE ARM:SE ACTARMCD:RE ACTARM:SE ARMNRS:RE ACTARMUD:RE COUNTRY:RR DMDTC:MP "
        "DMDY:MP "
    ),
    "SV": (
        "STUDYID:IR DOMAIN:IR USUBJID:IR VISITNUM:TR VISIT:SP SVPRESP:VE SVOCCUR:RE "
        "SVREASOC:RP SVCNTMOD:RP SVEPCHGI:RP VISITDY:MP SVSTDTC:ME SVENDTC:ME SVSTDY:MP "
        "SVENDY:MP SVUPDES:RP "
    ),
    "EX": (
        "STUDYID:IR DOMAIN:IR USUBJID:IR EXSEQ:IR EXGRPID:IP EXREFID:IP EXSPID:IP EXLNKID:IP "
        "EXLNKGRP:IP EXTRT:TR EXCAT:GP EXSCAT:GP EXDOSE:RE EXDOSTXT:RP EXDOSU:VE EXDOSFRM:VE "
        "EXDOSFRQ:RP EXDOSRGM:RP EXROUTE:VP EXLOT:RP EXLOC:RP EXLAT:VP EXDIR:VP EXFAST:RP "
        "EXADJ:RP TAETORD:MP EPOCH:MP EXSTDTC:ME EXENDTC:ME EXSTDY:MP EXENDY:MP EXDUR:MP "
        "EXTPT:MP EXTPTNUM:MP EXELTM:MP EXTPTREF:MP EXRFTDTC:MP "
    ),
    "CM": (
        "STUDYID:IR DOMAIN:IR USUBJID:IR CMSEQ:IR CMGRPID:IP CMSPID:IP CMTRT:TR CMMODIFY:SP "
        "CMDECOD:SP CMCAT:GP CMSCAT:GP CMPRESP:VP CMOCCUR:RP CMSTAT:RP CMREASND:RP CMINDC:RP "
        "CMCLAS:VP CMCLASCD:VP CMDOSE:RP CMDOSTXT:RP CMDOSU:VP CMDOSFRM:VP CMDOSFRQ:RP "
        "CMDOSTOT:RP CMDOSRGM:RP CMROUTE:VP CMADJ:RP CMRSDISC:RP TAETORD:MP EPOCH:MP "
        "CMSTDTC:MP CMENDTC:MP CMSTDY:MP CMENDY:MP CMDUR:MP CMSTRF:MP CMENRF:MP CMSTRTPT:MP "
        "CMSTTPT:MP CMENRTPT:MP CMENTPT:MP "
    ),
    "LB": (
        "STUDYID:IR DOMAIN:IR USUBJID:IR LBSEQ:IR LBGRPID:IP LBREFID:IP LBSPID:IP LBTESTCD:TR "
        "LBTEST:SR LBTSTCND:VP LBBDAGNT:VP LBTSTOPO:VP LBCAT:GE LBSCAT:GP LBORRES:QE "
        "LBORRESU:VE LBRESSCL:RP LBRESTYP:RP LBCOLSRT:RP LBORNRLO:VE LBORNRHI:VE LBLLOD:VP "
        "LBSTRESC:QE LBSTRESN:QE LBSTRESU:VE LBSTNRLO:VE LBSTNRHI:VE LBSTNRC:VP LBNRIND:VE "
        "LBSTAT:RP LBREASND:RP LBNAM:RP LBLOINC:SP LBSPEC:RP LBSPCCND:RP LBSPCUFL:RP "
        "LBMETHOD:RP LBANMETH:RP LBTMTHSN:RP LBLOBXFL:RE LBBLFL:RP LBFAST:RP LBDRVFL:RP "
        "LBTOX:VP LBTOXGR:RP LBCLSIG:RP LBLLOQ:VP VISITNUM:ME VISIT:MP VISITDY:MP "
        "TAETORD:MP EPOCH:MP "
        "LBDTC:ME LBENDTC:MP LBDY:MP LBENDY:MP LBTPT:MP LBTPTNUM:MP LBELTM:MP LBTPTREF:MP "
        "LBRFTDTC:MP LBPTFL:MP LBPDUR:MP "
    ),
    "AE": (
        "STUDYID:IR DOMAIN:IR USUBJID:IR SPDEVID:IP AESEQ:IR AEGRPID:IP AEREFID:IP AESPID:IP "
        "AETERM:TR AEMODIFY:SP AELLT:VE AELLTCD:VE AEDECOD:SR AEPTCD:VE AEHLT:VE AEHLTCD:VE "
        "AEHLGT:VE AEHLGTCD:VE AECAT:GP AESCAT:GP AEPRESP:VP AEBODSYS:RE AEBDSYCD:VE AESOC:VE "
        "AESOCCD:VE AELOC:RP AESEV:RP AESER:RE AEACN:RE AEACNOTH:RP AEACNDEV:RP AEREL:RE "
        "AERLDEV:RP AERELNST:RP AEPATT:RP AEOUT:RP AESCAN:RP AESCONG:RP AESDISAB:RP AESDTH:RP "
        "AESHOSP:RP AESLIFE:RP AESOD:RP AESMIE:RP AESINTV:RP AEUNANT:RP AERLPRT:RP AERLPRC:RP "
        "AECONTRT:RP AETOXGR:RP TAETORD:MP EPOCH:MP AESTDTC:ME AEENDTC:ME AESTDY:MP AEENDY:MP "
        "AEDUR:MP AEENRF:MP AEENRTPT:MP AEENTPT:MP "
    ),
    "CE": (
        "STUDYID:IR DOMAIN:IR USUBJID:IR CESEQ:IR CEGRPID:IP CEREFID:IP CESPID:IP CETERM:TR "
        "CEDECOD:SP CECAT:GP CESCAT:GP CEPRESP:VP CEOCCUR:RP CESTAT:RP CEREASND:RP "
        "CEBODSYS:RP CESEV:RP CETOXGR:RP TAETORD:MP EPOCH:MP CEDTC:MP CESTDTC:MP CEENDTC:MP "
        "CEDY:MP CESTDY:MP CEENDY:MP CESTRF:MP CEENRF:MP CESTRTPT:MP CESTTPT:MP CEENRTPT:MP "
        "CEENTPT:MP "
    ),
    "DS": (
        "STUDYID:IR DOMAIN:IR USUBJID:IR DSSEQ:IR DSGRPID:IP DSREFID:IP DSSPID:IP DSTERM:TR "
        "DSDECOD:SR DSCAT:GE DSSCAT:GP EPOCH:MP DSDTC:MP DSSTDTC:ME DSDY:MP DSSTDY:ME "
    ),
    "DV": (
        "STUDYID:IR DOMAIN:IR USUBJID:IR DVSEQ:IR DVREFID:IP DVSPID:IP DVTERM:TR DVDECOD:SP "
        "DVCAT:GP DVSCAT:GP TAETORD:MP EPOCH:MP DVSTDTC:MP DVENDTC:MP DVSTDY:MP DVENDY:MP "
    ),
    "TA": (
        "STUDYID:IR DOMAIN:IR ARMCD:TR ARM:SR TAETORD:MR ETCD:RR ELEMENT:SP TABRANCH:UE "
        "TATRANS:UE EPOCH:MR "
    ),
    "TE": ("STUDYID:IR DOMAIN:IR ETCD:TR ELEMENT:SR TESTRL:UR TEENRL:UP TEDUR:MP "),
    "TV": (
        "STUDYID:IR DOMAIN:IR VISITNUM:TR VISIT:SR VISITDY:MP ARMCD:RE ARM:SP TVSTRL:UR TVENRL:UP "
    ),
    "TI": ("STUDYID:IR DOMAIN:IR IETESTCD:TR IETEST:SR IECAT:GR IESCAT:GP TIRL:UP TIVERS:RP "),
    "TS": (
        "STUDYID:IR DOMAIN:IR TSSEQ:IR TSGRPID:IP TSPARMCD:TR TSPARM:SR TSVAL:QE TSVALNF:QP "
        "TSVALCD:QE TSVCDREF:QE TSVCDVER:QE "
    ),
}


class IgVariable(tuple[int, str, str, str]):
    """(order, name, role, core) of one IG variable."""

    __slots__ = ()

    @property
    def order(self) -> int:
        """Position in the domain as the IG lists it (1-based)."""
        return self[0]

    @property
    def name(self) -> str:
        """Variable name."""
        return self[1]

    @property
    def role(self) -> str:
        """SDTM role, as define.xml's ItemRef ``Role`` takes it."""
        return self[2]

    @property
    def core(self) -> str:
        """``Req``, ``Exp`` or ``Perm``."""
        return self[3]


@cache
def ig_variables(domain: str) -> dict[str, IgVariable]:
    """The IG's variables of ``domain`` by name; ``ExportError`` for a domain not tabulated here."""
    if domain not in _TABLE:
        raise ExportError(f"no SDTMIG {IG_VERSION} metadata for domain {domain!r}")
    out = {}
    for order, token in enumerate(_TABLE[domain].split(), start=1):
        name, codes = token.split(":")
        out[name] = IgVariable((order, name, _ROLES[codes[0]], _CORES[codes[1]]))
    return out


def order_by_ig(domain: str, names: list[str]) -> list[str]:
    """``names`` in the IG's order of ``domain``; a name the IG lacks is refused."""
    spec = ig_variables(domain)
    unknown = [n for n in names if n not in spec]
    if unknown:
        raise ExportError(f"{domain}: {unknown} are not SDTMIG {IG_VERSION} {domain} variables")
    return sorted(names, key=lambda n: spec[n].order)
