"""The language a person asked for (zh or en), and Chinese for the API messages people read."""

from __future__ import annotations

import re

from flask import g, has_request_context, request

LANGUAGES = ("en", "zh")
DEFAULT = "en"

# Exact English messages -> Chinese. Messages with variable parts are matched by PATTERNS.
MESSAGES_ZH = {
    "Wrong email or password.": "邮箱或密码错误。",
    "Sign in first: send 'Authorization: Bearer <access token>'.": "请先登录。",
    "Your token has expired; refresh it or sign in again.": "登录已过期,请刷新令牌或重新登录。",
    "The token is not valid.": "令牌无效。",
    "This account is disabled.": "该账号已停用。",
    "This account no longer exists or is disabled.": "该账号不存在或已停用。",
    "This refresh token is no longer valid; sign in again.": "刷新令牌已失效,请重新登录。",
    "This refresh token was already used; sign in again.": "刷新令牌已被使用,请重新登录。",
    "The demo password is refused in production; ask HQ for a new one.": "生产环境不接受演示密码,请向总部申请新密码。",
    "Only regional managers and HQ review inspections.": "只有区域经理和总部可以审核检查。",
    "You ran this inspection; another regional manager or HQ reviews it.": (
        "这是您本人执行的检查,须由其他区域经理或总部审核。"
    ),
    "The review queue is for regional managers and HQ.": "审核队列仅供区域经理和总部使用。",
    "Only the inspector who ran it completes an inspection.": "只有执行检查的检查员可以提交完成。",
    "Say what must be reworked: a comment is required to return an inspection.": "请说明需要整改的内容:退回检查必须填写意见。",
    "This conflict is already resolved.": "该冲突已处理。",
    "Resolution must be keep_server, take_device or edit.": "处理方式须为保留服务器值、采用设备值或编辑。",
    "This attachment's bytes have not been uploaded yet.": "该附件的文件尚未上传。",
    "The photo store cannot be reached right now; retry shortly.": "照片存储暂时无法连接,请稍后重试。",
    "The database cannot be reached right now; retry shortly.": "数据库暂时无法连接,请稍后重试。",
    "The period must end after it starts.": "结束时间必须晚于开始时间。",
    "The period must end on or after the day it starts.": "结束日期不得早于开始日期。",
    (
        "Verifying needs a photo of the fix to look at: none of this action's photos has "
        "been uploaded yet. Verify once the device has sent it."
    ): "验证需要能查看整改照片:该整改项的照片尚未上传。请在设备上传后再验证。",
    (
        "Send both ends of the period as dates (2026-11-01: the day at each site) or both "
        "as times with their offsets (2026-11-01T00:00:00+08:00)."
    ): (
        "期间的起止须同为日期(如 2026-11-01,即各门店当地的这一天),"
        "或同为带时区偏移的时间(如 2026-11-01T00:00:00+08:00)。"
    ),
    "This template is archived.": "该模板已归档。",
    "Say where: site_id or inspection_id.": "请指明门店(site_id)或检查(inspection_id)。",
    "The action's site must be its inspection's site.": "整改项的门店必须与其检查的门店一致。",
    "This is the last active HQ account; create or reactivate another HQ user first.": (
        "这是最后一个启用的总部账号,请先创建或启用另一个总部用户。"
    ),
    "The address contains a NUL character (%00); remove it.": "地址中含有空字符(%00),请删除。",
    "Expected an access token.": "需要访问令牌(access token)。",
    (
        "This sign-in has ended (signed out, or the account or its password changed); "
        "sign in again."
    ): "本次登录已结束(已退出,或账号、密码已变更),请重新登录。",
    "You may not raise an action at a site outside your scope.": (
        "您无权在权限范围以外的门店创建整改项。"
    ),
    "You may not upload to this attachment: its site is outside your scope.": (
        "您无权上传该附件:其门店不在您的权限范围内。"
    ),
    "Expected a refresh token.": "需要刷新令牌(refresh token)。",
    (
        "The device's answer was deleted on the server, so it cannot become the live one; "
        "resolve the conflict keeping the server's value to close it."
    ): "设备上的答案已在服务器上删除,无法设为有效答案;请选择保留服务器值来关闭该冲突。",
    "This file of the attachment is not available; fetch variant=original instead.": (
        "该附件的此版本文件不可用,请改为获取原图(variant=original)。"
    ),
}

PATTERNS_ZH = (
    (
        re.compile(
            r"^No (corrective action|inspection|conflict|attachment|site|region|user|"
            r"schedule|template|template version|assignment) with that id\.$"
        ),
        "未找到该记录(或不在您的权限范围内)。",
    ),
    (re.compile(r"^This needs the role .*; you are .*\.$"), "您的角色无权执行此操作。"),
    (
        re.compile(r"^You may not change this .*: its site is outside your scope\.$"),
        "您无权修改该记录:其门店不在您的权限范围内。",
    ),
    (re.compile(r"^Cannot complete: (.*)$"), "无法完成:{0}"),
    (
        re.compile(r"^The file of this attachment is uploaded and verified: .*$"),
        "该附件的文件已上传并校验,其摘要、大小和类型不能再更改;请保留服务器值,其他文件请作为新附件上传。",
    ),
    (re.compile(r"^Invalid input: (.*)$"), "输入无效:{0}"),
    (re.compile(r"^Uploads are limited to (\d+) bytes\.$"), "上传文件不得超过 {0} 字节。"),
    (
        re.compile(r"^This address does not accept (\S+); it accepts (.*)\.$"),
        "该地址不支持 {0} 请求方法,可用的请求方法:{1}。",
    ),
    (
        re.compile(r"^Nothing was found at this address; remove the trailing slash: (.*)$"),
        "未找到该地址;请去掉末尾的斜杠:{0}",
    ),
)

STATUS_ZH = {
    400: "请求无法解析,请检查请求内容是否为有效的 JSON。",
    401: "请先登录。",
    403: "您无权执行此操作。",
    404: "未找到该地址或记录。",
    405: "该地址不支持此请求方法。",
    409: "请求与记录当前状态冲突。",
    413: "请求内容超出服务允许的大小。",
    415: "请以 JSON 格式发送请求内容。",
    422: "部分字段无效,详见 errors。",
    429: "请求过于频繁,请稍后再试。",
    500: "服务器内部错误,已记录。",
    503: "服务暂时不可用,请稍后重试。",
}


def request_language() -> str:
    """The language of this request: the console's choice, else Accept-Language, else English."""
    if not has_request_context():
        return DEFAULT
    chosen = g.get("lang")
    if chosen in LANGUAGES:
        return chosen
    return request.accept_languages.best_match(LANGUAGES, default=DEFAULT) or DEFAULT


def error_message(message: str, status: int, default_en: str | None, lang: str) -> str:
    """The error message in `lang`; an untranslated detail falls back to the status message
    followed by the English detail, so nothing actionable is lost."""
    if lang != "zh":
        return message
    if message in MESSAGES_ZH:
        return MESSAGES_ZH[message]
    for pattern, template in PATTERNS_ZH:
        match = pattern.match(message)
        if match:
            return template.format(*match.groups())
    generic = STATUS_ZH.get(status)
    if generic is None:
        return message
    return generic if message == default_en else f"{generic}({message})"
